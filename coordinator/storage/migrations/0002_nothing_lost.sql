-- Nothing lost: graceful hand-backs (PREEMPTED) cost no attempt, capped per candidate.
ALTER TABLE campaigns ADD COLUMN max_preemptions INTEGER NOT NULL DEFAULT 20
  CHECK (max_preemptions >= 1);
ALTER TABLE candidates ADD COLUMN preemptions INTEGER NOT NULL DEFAULT 0;
