-- A reservation holds a load (drawing power) or a generator (exporting it):
-- generation checks count the second as an injection and load checks never.
ALTER TABLE reservations ADD COLUMN kind TEXT NOT NULL DEFAULT 'load';
