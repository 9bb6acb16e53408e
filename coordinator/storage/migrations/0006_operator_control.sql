-- The operator's view: a drained worker finishes the candidates it holds, is leased nothing more
-- and exits. The mark survives coordinator restarts and the worker's re-attachment.
ALTER TABLE workers ADD COLUMN draining BOOLEAN NOT NULL DEFAULT FALSE;
