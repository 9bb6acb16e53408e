-- Capability-aware leasing: each candidate's estimated training memory (coordinator/core/
-- memory_estimate.h); 0 for candidates created before, which any worker may take.
ALTER TABLE candidates ADD COLUMN est_memory_bytes BIGINT NOT NULL DEFAULT 0;
