-- Multi-fidelity search and artifacts. candidates.state 6 is STOPPED_EARLY: stopped at a rung
-- below the last, with a result there; a promotion takes it back to PENDING at the next rung.
ALTER TABLE campaigns ADD COLUMN stopped_early BIGINT NOT NULL DEFAULT 0 CHECK (stopped_early >= 0);
-- Resumes from a missing or corrupt checkpoint, and checkpoint writes that failed.
ALTER TABLE campaigns ADD COLUMN checkpoint_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE family_coverage ADD COLUMN stopped_early BIGINT NOT NULL DEFAULT 0
  CHECK (stopped_early >= 0);
ALTER TABLE pair_coverage ADD COLUMN stopped_early BIGINT NOT NULL DEFAULT 0
  CHECK (stopped_early >= 0);
ALTER TABLE axis_coverage ADD COLUMN stopped_early BIGINT NOT NULL DEFAULT 0
  CHECK (stopped_early >= 0);

-- The rung a candidate trains toward or stopped at, its result per rung completed
-- (quartet.v1.RungResult as JSON, in order), its newest checkpoint and exported model
-- (quartet.v1.Artifact as JSON; NULL when none or deleted), and the lease token of its last
-- completion (a repeat of it answers OK after a promotion).
ALTER TABLE candidates ADD COLUMN rung INTEGER NOT NULL DEFAULT 0 CHECK (rung >= 0);
ALTER TABLE candidates ADD COLUMN rung_results JSONB NOT NULL DEFAULT '[]';
ALTER TABLE candidates ADD COLUMN checkpoint JSONB;
ALTER TABLE candidates ADD COLUMN exported_model JSONB;
ALTER TABLE candidates ADD COLUMN completed_token BIGINT NOT NULL DEFAULT 0;

-- Promoted work (a higher rung) is leased before new candidates of the same priority.
ALTER TABLE work_queue ADD COLUMN rung INTEGER NOT NULL DEFAULT 0;
DROP INDEX work_queue_order_idx;
CREATE INDEX work_queue_order_idx ON work_queue (priority DESC, rung DESC, candidate_id);

-- Every checkpoint (kind 1) and exported model (kind 2) a worker reported; deleted_at is set when
-- the coordinator removed the file (superseded, or not among the campaign's best).
CREATE TABLE artifacts (
  id            BIGSERIAL PRIMARY KEY,
  candidate_id  BIGINT   NOT NULL REFERENCES candidates (id),
  campaign_id   BIGINT   NOT NULL REFERENCES campaigns (id),
  kind          SMALLINT NOT NULL CHECK (kind IN (1, 2)),
  uri           TEXT     NOT NULL,
  size_bytes    BIGINT   NOT NULL,
  sha256        TEXT     NOT NULL,
  epoch         INTEGER  NOT NULL,
  attempt       INTEGER  NOT NULL,
  created_at    TIMESTAMPTZ NOT NULL,
  deleted_at    TIMESTAMPTZ
);
CREATE INDEX artifacts_live_idx ON artifacts (campaign_id, id) WHERE deleted_at IS NULL;
