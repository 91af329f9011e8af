-- The example datasource of deploy/compose.yaml: a small `orders` table in the database
-- `shop`, and `sluice_reader`, a role that may only read it. The postgres image runs this once,
-- as the superuser, when its data volume is new (psql, so the \set below works).
--
-- The role's password is never written here: psql's `-v reader_password=...` gives it (the
-- README's "Running it for real"), else it is read from the compose secret `reader_password`.
-- Its sealed copy goes into the catalog (`sluice secret seal`, docs/DEPLOY.md).

\set ON_ERROR_STOP on
\if :{?reader_password}
\else
\set reader_password `cat /run/secrets/reader_password`
\endif

CREATE TABLE orders (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer    text NOT NULL,
    status      text NOT NULL CHECK (status IN ('new', 'paid', 'shipped', 'cancelled')),
    total       numeric(10, 2) NOT NULL,
    created_at  timestamptz NOT NULL
);

INSERT INTO orders (customer, status, total, created_at) VALUES
    ('Ada Lovelace',    'paid',      49.90, '2026-01-05 09:12:00+00'),
    ('Grace Hopper',    'shipped',  120.00, '2026-01-06 14:30:00+00'),
    ('Edsger Dijkstra', 'paid',       8.50, '2026-01-07 08:01:00+00'),
    ('Barbara Liskov',  'new',      310.25, '2026-01-08 17:45:00+00'),
    ('Leslie Lamport',  'paid',      72.00, '2026-01-09 11:20:00+00'),
    ('Donald Knuth',    'cancelled', 15.00, '2026-01-10 10:00:00+00'),
    ('Frances Allen',   'shipped',   99.99, '2026-01-11 16:05:00+00'),
    ('Ken Thompson',    'paid',     240.00, '2026-01-12 13:40:00+00');

CREATE ROLE sluice_reader LOGIN PASSWORD :'reader_password';
-- Read one table, nothing else: no other table, no writes, no new objects.
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO sluice_reader;
GRANT SELECT ON orders TO sluice_reader;
