-- Keeps updated_at true for every write path, including manual SQL.
CREATE FUNCTION set_updated_at() RETURNS trigger AS $$
BEGIN
    IF NEW IS DISTINCT FROM OLD THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    name          TEXT NOT NULL
        CONSTRAINT users_name_length CHECK (char_length(name) BETWEEN 2 AND 100 AND name = btrim(name)),
    email         TEXT NOT NULL
        CONSTRAINT users_email_shape CHECK (char_length(email) BETWEEN 3 AND 254 AND position('@' IN email) > 1),
    phone_number  TEXT NOT NULL
        CONSTRAINT users_phone_number_e164 CHECK (phone_number ~ '^\+[1-9][0-9]{6,14}$'),
    country       TEXT NOT NULL
        CONSTRAINT users_country_length CHECK (char_length(country) BETWEEN 2 AND 100 AND country = btrim(country)),
    state         TEXT NOT NULL
        CONSTRAINT users_state_length CHECK (char_length(state) BETWEEN 2 AND 100 AND state = btrim(state)),
    role          TEXT NOT NULL DEFAULT 'user'
        CONSTRAINT users_role_valid CHECK (role IN ('user', 'admin')),
    password_hash TEXT NOT NULL
        CONSTRAINT users_password_hash_argon2id CHECK (password_hash LIKE '$argon2id$%'),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The application maps these two constraint names to the contract's 400 messages.
    CONSTRAINT users_phone_number_key UNIQUE (phone_number)
);

-- Uniqueness and login lookups are case-insensitive on the whole address.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

CREATE TRIGGER users_set_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
