-- Quartet schema, version 1. States are the proto enum numbers:
--   campaigns.state: 1 RUNNING, 2 PAUSED, 3 CANCELLED, 4 DONE
--   candidates.state: 1 PENDING, 2 LEASED, 3 SUCCEEDED, 4 FAILED, 5 CANCELLED

CREATE TABLE campaigns (
  id                 BIGSERIAL PRIMARY KEY,
  name               TEXT        NOT NULL,
  config             JSONB       NOT NULL,  -- quartet.v1.CampaignConfig, defaults filled
  k                  INTEGER     NOT NULL CHECK (k >= 2),
  budget             BIGINT      NOT NULL CHECK (budget >= 1),
  max_attempts       INTEGER     NOT NULL CHECK (max_attempts >= 1),
  priority           INTEGER     NOT NULL DEFAULT 0,
  state              SMALLINT    NOT NULL DEFAULT 1,
  issued             BIGINT      NOT NULL DEFAULT 0 CHECK (issued <= budget),
  pending            BIGINT      NOT NULL DEFAULT 0 CHECK (pending >= 0),
  leased             BIGINT      NOT NULL DEFAULT 0 CHECK (leased >= 0),
  succeeded          BIGINT      NOT NULL DEFAULT 0 CHECK (succeeded >= 0),
  failed             BIGINT      NOT NULL DEFAULT 0 CHECK (failed >= 0),
  cancelled          BIGINT      NOT NULL DEFAULT 0 CHECK (cancelled >= 0),
  best_accuracy      DOUBLE PRECISION NOT NULL DEFAULT 0,
  best_candidate_id  BIGINT      NOT NULL DEFAULT 0,
  succeeded_seconds  DOUBLE PRECISION NOT NULL DEFAULT 0,
  created_at         TIMESTAMPTZ NOT NULL,
  updated_at         TIMESTAMPTZ NOT NULL,
  finished_at        TIMESTAMPTZ
);
CREATE INDEX campaigns_state_idx ON campaigns (state);

CREATE TABLE workers (
  id                TEXT PRIMARY KEY,
  host              TEXT NOT NULL DEFAULT '',
  device            TEXT NOT NULL DEFAULT '',
  gpu_name          TEXT NOT NULL DEFAULT '',
  gpu_memory_bytes  BIGINT NOT NULL DEFAULT 0,
  families          TEXT[] NOT NULL DEFAULT '{}',
  version           TEXT NOT NULL DEFAULT '',
  registered_at     TIMESTAMPTZ NOT NULL,
  last_seen_at      TIMESTAMPTZ NOT NULL
);
CREATE SEQUENCE worker_ids;

-- Fencing tokens: every lease takes the next value.
CREATE SEQUENCE lease_tokens;

CREATE TABLE candidates (
  id                BIGSERIAL PRIMARY KEY,
  campaign_id       BIGINT      NOT NULL REFERENCES campaigns (id),
  combo_rank        BIGINT      NOT NULL CHECK (combo_rank >= 0),
  repeat            INTEGER     NOT NULL CHECK (repeat >= 0),
  families          TEXT[]      NOT NULL,  -- model names in pool order
  state             SMALLINT    NOT NULL DEFAULT 1,
  attempt           INTEGER     NOT NULL DEFAULT 0,
  lease_token       BIGINT      NOT NULL DEFAULT 0,
  worker_id         TEXT        NOT NULL DEFAULT '',
  lease_deadline    TIMESTAMPTZ,
  cancel_requested  BOOLEAN     NOT NULL DEFAULT FALSE,
  result            JSONB,                 -- quartet.v1.Result when SUCCEEDED
  test_accuracy     DOUBLE PRECISION NOT NULL DEFAULT 0,
  error_class       SMALLINT    NOT NULL DEFAULT 0,
  error_message     TEXT        NOT NULL DEFAULT '',
  created_at        TIMESTAMPTZ NOT NULL,
  started_at        TIMESTAMPTZ,
  finished_at       TIMESTAMPTZ,
  UNIQUE (campaign_id, combo_rank, repeat)
);
CREATE INDEX candidates_campaign_state_idx ON candidates (campaign_id, state);
CREATE INDEX candidates_leased_deadline_idx ON candidates (lease_deadline) WHERE state = 2;

-- Open work: one row per PENDING candidate, so a claim scans a small table
-- (SELECT ... FOR UPDATE SKIP LOCKED) however large the history grows.
CREATE TABLE work_queue (
  candidate_id  BIGINT PRIMARY KEY REFERENCES candidates (id),
  campaign_id   BIGINT  NOT NULL,
  priority      INTEGER NOT NULL
);
CREATE INDEX work_queue_order_idx ON work_queue (priority DESC, candidate_id);

-- Metric points, idempotent by (candidate, attempt, step, name).
CREATE TABLE metrics (
  candidate_id  BIGINT  NOT NULL REFERENCES candidates (id),
  attempt       INTEGER NOT NULL,
  step          BIGINT  NOT NULL,
  name          TEXT    NOT NULL,
  epoch         INTEGER NOT NULL DEFAULT 0,
  value         DOUBLE PRECISION NOT NULL,
  recorded_at   TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (candidate_id, attempt, step, name)
);

-- Coverage counters by candidate state, changed in the same transaction as every state change.
CREATE TABLE family_coverage (
  campaign_id  BIGINT NOT NULL REFERENCES campaigns (id),
  family       TEXT   NOT NULL,
  position     INTEGER NOT NULL,  -- index in the campaign's pool
  pending      BIGINT NOT NULL DEFAULT 0 CHECK (pending >= 0),
  leased       BIGINT NOT NULL DEFAULT 0 CHECK (leased >= 0),
  succeeded    BIGINT NOT NULL DEFAULT 0 CHECK (succeeded >= 0),
  failed       BIGINT NOT NULL DEFAULT 0 CHECK (failed >= 0),
  cancelled    BIGINT NOT NULL DEFAULT 0 CHECK (cancelled >= 0),
  PRIMARY KEY (campaign_id, family)
);

CREATE TABLE pair_coverage (
  campaign_id  BIGINT NOT NULL REFERENCES campaigns (id),
  family_a     TEXT   NOT NULL,
  family_b     TEXT   NOT NULL,
  position     INTEGER NOT NULL,  -- index of the pair in pool order
  pending      BIGINT NOT NULL DEFAULT 0 CHECK (pending >= 0),
  leased       BIGINT NOT NULL DEFAULT 0 CHECK (leased >= 0),
  succeeded    BIGINT NOT NULL DEFAULT 0 CHECK (succeeded >= 0),
  failed       BIGINT NOT NULL DEFAULT 0 CHECK (failed >= 0),
  cancelled    BIGINT NOT NULL DEFAULT 0 CHECK (cancelled >= 0),
  PRIMARY KEY (campaign_id, family_a, family_b)
);

-- Triples are only counted when issued (cheap: C(k, 3) rows per candidate, created on first use).
CREATE TABLE triple_coverage (
  campaign_id  BIGINT NOT NULL REFERENCES campaigns (id),
  family_a     TEXT   NOT NULL,
  family_b     TEXT   NOT NULL,
  family_c     TEXT   NOT NULL,
  issued       BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (campaign_id, family_a, family_b, family_c)
);
