-- 0001: the authoritative schema (DESIGN.md §5). Applied by Migrate in one transaction, under
-- its advisory lock; recorded in schema_migrations (which Migrate creates). A migration file is
-- never edited once released (Migrate compares checksums): change the schema with a new file.

-- A player: the durable state a position flush writes. The id is the player's durable id, not
-- the in-world entity id (DESIGN.md §1a). epoch is the authority epoch of the last writer: a
-- write with an older one is not applied (fencing; see UpsertPlayers). A player's zone is its
-- cell; there is no separate zone.
CREATE TABLE players (
    id         bigint           PRIMARY KEY,
    account    text             NOT NULL UNIQUE CHECK (account <> ''),
    x          double precision NOT NULL DEFAULT 0,
    y          double precision NOT NULL DEFAULT 0, -- height
    z          double precision NOT NULL DEFAULT 0,
    cell       bigint           NOT NULL CHECK (cell >= 0),
    stats      jsonb            NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(stats) = 'object'),
    epoch      bigint           NOT NULL CHECK (epoch >= 0),
    created_at timestamptz      NOT NULL DEFAULT now(),
    updated_at timestamptz      NOT NULL DEFAULT now()
) WITH (fillfactor = 80); -- room on each page for HOT updates: position flushes rewrite every row

-- Recovery loads a cell's players.
CREATE INDEX players_cell ON players (cell);

-- An item is owned by a player (inventory) or lies on the ground in a cell, never both and
-- never neither. version grows by one with every change: inventory transactions update
-- "WHERE id = $1 AND version = $2" (optimistic concurrency) and retry or fail on a miss.
CREATE TABLE items (
    id         bigint           PRIMARY KEY,
    owner      bigint           REFERENCES players (id),
    cell       bigint           CHECK (cell >= 0),
    x          double precision,
    y          double precision,
    z          double precision,
    kind       text             NOT NULL CHECK (kind <> ''),
    attributes jsonb            NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(attributes) = 'object'),
    version    bigint           NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at timestamptz      NOT NULL DEFAULT now(),
    updated_at timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT items_owned_xor_on_ground CHECK ((owner IS NULL) = (cell IS NOT NULL))
);

-- A player's inventory; a cell's ground items.
CREATE INDEX items_owner ON items (owner) WHERE owner IS NOT NULL;
CREATE INDEX items_ground_cell ON items (cell) WHERE owner IS NULL;

-- The event log: the append-only audit trail analytics and anti-cheat read. Every event has an
-- idempotency key (an outbox event's Key; the limits match persistence.MaxEventKeyLen and
-- MaxEventKindLen), so a delivery retried after a crash inserts nothing the second time
-- (INSERT ... ON CONFLICT (idem_key) DO NOTHING). seq orders the log. player, cell and epoch
-- are optional context; player has no foreign key, as the trail outlives what it describes.
CREATE TABLE events (
    seq        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idem_key   text        NOT NULL UNIQUE CHECK (octet_length(idem_key) BETWEEN 1 AND 128),
    kind       text        NOT NULL CHECK (octet_length(kind) BETWEEN 1 AND 64),
    player     bigint,
    cell       bigint,
    epoch      bigint,
    payload    jsonb       NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX events_player_seq ON events (player, seq) WHERE player IS NOT NULL;
CREATE INDEX events_kind_created ON events (kind, created_at);

-- Append-only: UPDATE, DELETE and TRUNCATE of events fail with SQLSTATE 23001
-- (restrict_violation). A guard against application bugs, not a security boundary (a table
-- owner can drop the triggers); for that, grant the application role INSERT and SELECT only.
CREATE FUNCTION events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER events_no_update_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();
