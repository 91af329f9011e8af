-- The metadata store of compose.replicated.yaml, as docs/SCALE_OUT.md ("Setting up the
-- database") sets one up: a role `sluice` that owns a database `sluice` and is no superuser.
-- Sluice creates its tables there at its first start. Run by the postgres image once, on an
-- empty volume, as the superuser. The password is read from the Compose secret by psql
-- itself (less its trailing newline, as Sluice reads SLUICE_METADATA_PASSWORD_FILE), so it
-- appears on no command line.
\set ON_ERROR_STOP on
\set password `cat /run/secrets/metadata_password`
CREATE ROLE sluice LOGIN PASSWORD :'password';
CREATE DATABASE sluice OWNER sluice;
-- Only its owner connects to it.
REVOKE ALL ON DATABASE sluice FROM PUBLIC;
