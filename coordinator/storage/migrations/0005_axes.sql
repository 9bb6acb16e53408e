-- Parameter axes: the search space is the family axis times every parameter axis's levels.
-- Each candidate's level and applied value per axis (config order); empty for candidates of
-- campaigns without axes, which is every candidate created before.
ALTER TABLE candidates ADD COLUMN levels INTEGER[] NOT NULL DEFAULT '{}';
ALTER TABLE candidates ADD COLUMN axis_values TEXT[] NOT NULL DEFAULT '{}';

-- A campaign may have one backbone family (k = 1) or no family axis at all (k = 0, empty pool):
-- the k >= 2 check of version 1 (whatever its name) gives way to k >= 0.
DO $$
DECLARE
  c record;
BEGIN
  FOR c IN SELECT conname FROM pg_constraint
           WHERE conrelid = 'campaigns'::regclass AND contype = 'c'
             AND pg_get_constraintdef(oid) LIKE '%(k >= 2)%' LOOP
    EXECUTE format('ALTER TABLE campaigns DROP CONSTRAINT %I', c.conname);
  END LOOP;
END
$$;
ALTER TABLE campaigns ADD CONSTRAINT campaigns_k_nonnegative CHECK (k >= 0);

-- Axis coverage by candidate state, changed in the same transaction as every state change: one
-- row per axis level (family '') and one per (axis, level, pool family). No rows for a campaign
-- without axes.
CREATE TABLE axis_coverage (
  campaign_id  BIGINT  NOT NULL REFERENCES campaigns (id),
  axis         INTEGER NOT NULL,  -- index in the campaign's config.axes
  level        INTEGER NOT NULL,  -- value or stratum index
  family       TEXT    NOT NULL DEFAULT '',
  pending      BIGINT  NOT NULL DEFAULT 0 CHECK (pending >= 0),
  leased       BIGINT  NOT NULL DEFAULT 0 CHECK (leased >= 0),
  succeeded    BIGINT  NOT NULL DEFAULT 0 CHECK (succeeded >= 0),
  failed       BIGINT  NOT NULL DEFAULT 0 CHECK (failed >= 0),
  cancelled    BIGINT  NOT NULL DEFAULT 0 CHECK (cancelled >= 0),
  PRIMARY KEY (campaign_id, axis, level, family)
);
