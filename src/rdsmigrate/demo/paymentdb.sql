-- The demo's payments database: what a real migration meets, generated on the server.
--
-- Loaded by rdsmigrate.demo.dataset, one "-- step:" block at a time on one session, into an
-- empty database. Size follows the session setting rdsmigrate.demo_scale (1 = 100,000 payments).
--
-- Deterministic on purpose: every value derives from the generate_series number through a hash
-- (pg_temp.pick) or md5, never random() or now(), and rows that take a sequence or identity value are
-- inserted in a fixed order, so two loads produce identical databases, row for row.
--
-- Keys, indexes, foreign keys and triggers come after the rows, as pg_restore does it: building an
-- index once over loaded rows and validating a foreign key with one join are both far cheaper than
-- maintaining them row by row.

-- step: helpers
-- Session-only helpers (pg_temp): they shape the data but are not part of the database.
SET TIME ZONE 'UTC';

CREATE FUNCTION pg_temp.n(base integer) RETURNS integer
LANGUAGE sql STABLE
AS $$ SELECT base * current_setting('rdsmigrate.demo_scale')::integer $$;

-- A stable pseudo-random integer in [0, m) for row g; salt makes columns independent.
-- hashint8extended hashes the integer's value, not its bytes, and cannot change between
-- releases (hash partitions depend on it): the same on every machine and version. The salt's
-- md5 is a constant the planner folds once; an md5 per row instead made the payments step four
-- times slower (1.9 s against 0.5 s at scale 1).
CREATE FUNCTION pg_temp.pick(salt text, g bigint, m bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (hashint8extended(g, ('x' || substr(md5(salt), 1, 15))::bit(60)::bigint)
              & 9223372036854775807) % m $$;

-- Where merchant m is based, and so which currency it settles and charges in.
CREATE FUNCTION pg_temp.country(m bigint) RETURNS char(2)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (ARRAY['US','DE','FR','NL','GB','ES','IT','SE','PL','JP'])[1 + pg_temp.pick('country', m, 10)] $$;

CREATE FUNCTION pg_temp.currency(m bigint) RETURNS char(3)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (ARRAY['USD','EUR','EUR','EUR','GBP','EUR','EUR','SEK','PLN','JPY'])[1 + pg_temp.pick('country', m, 10)] $$;

-- step: schema
CREATE SCHEMA payments;
CREATE SCHEMA ledger;
CREATE SCHEMA audit;
COMMENT ON SCHEMA payments IS 'Merchants, customers and the payments between them';
COMMENT ON SCHEMA ledger IS 'Double-entry bookkeeping of captured money';
COMMENT ON SCHEMA audit IS 'Append-only record of who did what';

CREATE TYPE payments.payment_status AS ENUM
    ('pending', 'authorized', 'captured', 'failed', 'refunded', 'disputed');
CREATE DOMAIN payments.currency_code AS char(3) CHECK (VALUE ~ '^[A-Z]{3}$');
CREATE DOMAIN payments.positive_amount AS numeric(14, 2) CHECK (VALUE > 0);

-- Invoice numbers must be gap-tolerant but never reused: a sequence no column owns.
CREATE SEQUENCE payments.invoice_number_seq START 100001;

CREATE FUNCTION payments.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    -- A statement that sets updated_at itself (a backfill, a replayed change) keeps its value.
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$$;

CREATE TABLE payments.merchants (
    merchant_id         integer NOT NULL,
    name                text NOT NULL,
    country             char(2) NOT NULL,
    category_code       smallint NOT NULL,
    status              text NOT NULL DEFAULT 'active'
                        CHECK (status IN ('active', 'suspended', 'closed')),
    settlement_currency payments.currency_code NOT NULL,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);

CREATE TABLE payments.customers (
    customer_id bigint NOT NULL,
    email       text NOT NULL,
    full_name   text NOT NULL,
    country     char(2) NOT NULL,
    metadata    jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE payments.payment_methods (
    method_id   uuid NOT NULL,
    customer_id bigint NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('card', 'sepa_debit', 'wallet')),
    brand       text,
    last4       char(4),
    expires_on  date,
    created_at  timestamptz NOT NULL
);

CREATE TABLE payments.payments (
    payment_id  bigint NOT NULL,
    created_at  timestamptz NOT NULL,
    merchant_id integer NOT NULL,
    customer_id bigint NOT NULL,
    method_id   uuid NOT NULL,
    amount      payments.positive_amount NOT NULL,
    fee         numeric(14, 2) NOT NULL,
    net_amount  numeric(14, 2) GENERATED ALWAYS AS (amount - fee) STORED,
    currency    payments.currency_code NOT NULL,
    status      payments.payment_status NOT NULL,
    metadata    jsonb NOT NULL,
    tags        text[] NOT NULL DEFAULT '{}',
    updated_at  timestamptz NOT NULL
) PARTITION BY RANGE (created_at);

CREATE TABLE payments.payments_2024_01 PARTITION OF payments.payments FOR VALUES FROM ('2024-01-01 00:00+00') TO ('2024-02-01 00:00+00');
CREATE TABLE payments.payments_2024_02 PARTITION OF payments.payments FOR VALUES FROM ('2024-02-01 00:00+00') TO ('2024-03-01 00:00+00');
CREATE TABLE payments.payments_2024_03 PARTITION OF payments.payments FOR VALUES FROM ('2024-03-01 00:00+00') TO ('2024-04-01 00:00+00');
CREATE TABLE payments.payments_2024_04 PARTITION OF payments.payments FOR VALUES FROM ('2024-04-01 00:00+00') TO ('2024-05-01 00:00+00');
CREATE TABLE payments.payments_2024_05 PARTITION OF payments.payments FOR VALUES FROM ('2024-05-01 00:00+00') TO ('2024-06-01 00:00+00');
CREATE TABLE payments.payments_2024_06 PARTITION OF payments.payments FOR VALUES FROM ('2024-06-01 00:00+00') TO ('2024-07-01 00:00+00');
CREATE TABLE payments.payments_2024_07 PARTITION OF payments.payments FOR VALUES FROM ('2024-07-01 00:00+00') TO ('2024-08-01 00:00+00');
CREATE TABLE payments.payments_2024_08 PARTITION OF payments.payments FOR VALUES FROM ('2024-08-01 00:00+00') TO ('2024-09-01 00:00+00');
CREATE TABLE payments.payments_2024_09 PARTITION OF payments.payments FOR VALUES FROM ('2024-09-01 00:00+00') TO ('2024-10-01 00:00+00');
CREATE TABLE payments.payments_2024_10 PARTITION OF payments.payments FOR VALUES FROM ('2024-10-01 00:00+00') TO ('2024-11-01 00:00+00');
CREATE TABLE payments.payments_2024_11 PARTITION OF payments.payments FOR VALUES FROM ('2024-11-01 00:00+00') TO ('2024-12-01 00:00+00');
CREATE TABLE payments.payments_2024_12 PARTITION OF payments.payments FOR VALUES FROM ('2024-12-01 00:00+00') TO ('2025-01-01 00:00+00');
-- Nobody created next year's partitions in time: January's payments land here.
CREATE TABLE payments.payments_default PARTITION OF payments.payments DEFAULT;

CREATE TABLE payments.refunds (
    refund_id          bigint NOT NULL,
    payment_id         bigint NOT NULL,
    payment_created_at timestamptz NOT NULL,
    amount             payments.positive_amount NOT NULL,
    reason             text NOT NULL,
    created_at         timestamptz NOT NULL
);

CREATE TABLE payments.receipts (
    payment_id         bigint NOT NULL,
    payment_created_at timestamptz NOT NULL,
    issued_at          timestamptz NOT NULL,
    content_type       text NOT NULL DEFAULT 'application/pdf',
    document           bytea NOT NULL
);

CREATE TABLE payments.invoices (
    invoice_no  bigint NOT NULL DEFAULT nextval('payments.invoice_number_seq'),
    merchant_id integer NOT NULL,
    period      date NOT NULL,
    payments    integer NOT NULL,
    total       numeric(16, 2) NOT NULL,
    currency    payments.currency_code NOT NULL,
    issued_at   timestamptz NOT NULL
);

CREATE TABLE payments.statements (
    merchant_id integer NOT NULL,
    year        integer NOT NULL,
    document    oid NOT NULL
);

CREATE TABLE ledger.accounts (
    account_id  bigint NOT NULL,
    owner_kind  text NOT NULL CHECK (owner_kind IN ('customer', 'merchant')),
    customer_id bigint,
    merchant_id integer,
    currency    payments.currency_code NOT NULL,
    opened_at   timestamptz NOT NULL,
    CHECK ((customer_id IS NOT NULL) = (owner_kind = 'customer')
           AND (merchant_id IS NOT NULL) = (owner_kind = 'merchant'))
);

CREATE TABLE ledger.entries (
    entry_id           bigint GENERATED ALWAYS AS IDENTITY,
    account_id         bigint NOT NULL,
    payment_id         bigint NOT NULL,
    payment_created_at timestamptz NOT NULL,
    direction          char(1) NOT NULL CHECK (direction IN ('D', 'C')),
    amount             numeric(14, 2) NOT NULL,
    currency           payments.currency_code NOT NULL,
    posted_at          timestamptz NOT NULL
);

-- No primary key, and a few rows written twice by a retrying client: a log as found in the wild.
CREATE TABLE audit.events (
    occurred_at timestamptz NOT NULL,
    actor       text NOT NULL,
    action      text NOT NULL,
    entity      text NOT NULL,
    entity_id   bigint NOT NULL,
    detail      jsonb
);

-- step: merchants
INSERT INTO payments.merchants
    (merchant_id, name, country, category_code, settlement_currency, created_at, updated_at)
SELECT g,
       (ARRAY['Acme', 'Globex', 'Initech', 'Umbrella', 'Stark', 'Wayne', 'Hooli', 'Vandelay',
              'Soylent', 'Tyrell'])[1 + pg_temp.pick('brand', g, 10)]
       || ' ' || (ARRAY['Shop', 'Foods', 'Travel', 'Games', 'Pharmacy', 'Books', 'Energy',
                        'Fitness'])[1 + pg_temp.pick('line', g, 8)]
       || ' #' || g,
       pg_temp.country(g),
       (ARRAY[5411, 5812, 4511, 5942, 5912, 7997, 4900, 5999])[1 + pg_temp.pick('mcc', g, 8)],
       pg_temp.currency(g),
       timestamptz '2023-01-01 00:00+00' + g * interval '37 minutes',
       timestamptz '2023-01-01 00:00+00' + g * interval '37 minutes'
FROM generate_series(1, pg_temp.n(200)) AS g;

-- step: customers
INSERT INTO payments.customers (customer_id, email, full_name, country, metadata, created_at, updated_at)
SELECT g,
       'customer' || g || '@' || (ARRAY['example.com', 'example.org', 'mail.example',
                                        'example.net'])[1 + pg_temp.pick('mail', g, 4)],
       first || ' ' || last,
       (ARRAY['US', 'DE', 'FR', 'NL', 'GB', 'ES', 'IT', 'SE', 'PL', 'JP'])[1 + pg_temp.pick('cc', g, 10)],
       jsonb_build_object(
           'segment', (ARRAY['consumer', 'consumer', 'consumer', 'business'])[1 + pg_temp.pick('seg', g, 4)],
           'marketing_opt_in', pg_temp.pick('opt', g, 3) = 0,
           'signup_channel', (ARRAY['web', 'ios', 'android', 'partner'])[1 + pg_temp.pick('chan', g, 4)])
       || CASE WHEN g % 7 = 0
               THEN jsonb_build_object('address', jsonb_build_object(
                        'city', (ARRAY['Zürich', 'København', 'Łódź', 'São Paulo', 'Reykjavík',
                                       'Kraków'])[1 + pg_temp.pick('city', g, 6)],
                        'postcode', lpad(pg_temp.pick('zip', g, 99999)::text, 5, '0')))
               ELSE '{}' END,
       created,
       created
FROM generate_series(1, pg_temp.n(10000)) AS g,
     LATERAL (SELECT (ARRAY['Ana', 'Björn', 'Chloé', 'Dmitri', 'Emeka', 'Fatima', 'Grzegorz',
                            'Hana', 'Iñigo', 'Jürgen', 'Kenji', 'Léa', 'Mateus', 'Nour', 'Olga',
                            'Priya', 'Quentin', 'Renée', 'Søren', 'Tomás', 'Uma', 'Wei', 'Yara',
                            'Zoë'])[1 + pg_temp.pick('first', g, 24)] AS first,
                     (ARRAY['Smith', 'Müller', 'García', 'Dubois', 'Kowalski', 'Rossi',
                            'Nakamura', 'Andersson', 'O''Brien', 'van der Berg', 'Silva', 'Nguyen',
                            'Østergaard', 'Schröder', 'Kim', 'Patel'])[1 + pg_temp.pick('last', g, 16)] AS last,
                     timestamptz '2023-06-01 00:00+00' + pg_temp.pick('since', g, 18000000) * interval '1 second' AS created
             ) AS person;

-- step: payment methods
-- Customer c's first method is md5('pm:' || c): payments find it without a lookup.
INSERT INTO payments.payment_methods (method_id, customer_id, kind, brand, last4, expires_on, created_at)
SELECT md5('pm:' || g)::uuid,
       (g - 1) % pg_temp.n(10000) + 1,
       kind,
       CASE kind WHEN 'card' THEN (ARRAY['visa', 'mastercard', 'amex'])[1 + pg_temp.pick('brand', g, 3)]
                 WHEN 'wallet' THEN 'apple_pay' END,
       CASE WHEN kind <> 'wallet' THEN lpad(pg_temp.pick('last4', g, 10000)::text, 4, '0') END,
       CASE WHEN kind = 'card' THEN date '2025-01-31' + pg_temp.pick('exp', g, 1460)::integer END,
       timestamptz '2023-06-01 00:00+00' + pg_temp.pick('pm', g, 18000000) * interval '1 second'
FROM generate_series(1, pg_temp.n(15000)) AS g,
     LATERAL (SELECT (ARRAY['card', 'card', 'card', 'card', 'card', 'card', 'card', 'card',
                            'sepa_debit', 'wallet'])[1 + pg_temp.pick('kind', g, 10)] AS kind) AS k;

-- step: payments
-- Thirteen months of payments: 2024 in monthly partitions, January 2025 in the default one.
INSERT INTO payments.payments
    (payment_id, created_at, merchant_id, customer_id, method_id, amount, fee, currency, status,
     metadata, tags, updated_at)
SELECT g, created, merchant, customer, md5('pm:' || customer)::uuid, amount,
       round(amount * 0.029 + 0.30, 2),
       pg_temp.currency(merchant),
       CASE WHEN g % 20 = 7 THEN 'refunded'
            WHEN r < 2 THEN 'failed' WHEN r < 4 THEN 'pending' WHEN r < 7 THEN 'authorized'
            WHEN r = 7 THEN 'disputed' ELSE 'captured' END::payments.payment_status,
       jsonb_build_object('order', 'o' || g,
                          'channel', (ARRAY['web', 'ios', 'android', 'pos'])[1 + pg_temp.pick('ch', g, 4)],
                          '3ds', pg_temp.pick('3ds', g, 2) = 0)
       || CASE WHEN g % 11 = 0
               THEN jsonb_build_object('items', jsonb_build_array(
                        jsonb_build_object('sku', 'SKU-' || pg_temp.pick('sku', g, 5000), 'qty', 1 + g % 3)))
               ELSE '{}' END,
       CASE pg_temp.pick('tags', g, 10)
            WHEN 0 THEN ARRAY['subscription']
            WHEN 1 THEN ARRAY['first_purchase', 'promo']
            WHEN 2 THEN ARRAY['marketplace', 'split', 'payout_delayed']
            ELSE '{}' END,
       created + pg_temp.pick('upd', g, 3600) * interval '1 second'
FROM generate_series(1, pg_temp.n(100000)) AS g,
     LATERAL (SELECT timestamptz '2024-01-01 00:00+00'
                     + (g - 1) * (interval '396 days' / pg_temp.n(100000))
                     + pg_temp.pick('sec', g, 60) * interval '1 second' AS created,
                     -- A few large merchants take most of the volume, as in life.
                     1 + pg_temp.pick('m1', g, pg_temp.n(200)) * pg_temp.pick('m2', g, pg_temp.n(200))
                         / pg_temp.n(200) AS merchant,
                     1 + pg_temp.pick('cust', g, pg_temp.n(10000)) AS customer,
                     ((100 + pg_temp.pick('amt', g, 49900)) * CASE WHEN g % 97 = 0 THEN 40 ELSE 1 END)::numeric / 100 AS amount,
                     pg_temp.pick('status', g, 100) AS r
             ) AS p;

-- step: refunds
INSERT INTO payments.refunds (refund_id, payment_id, payment_created_at, amount, reason, created_at)
SELECT (payment_id - 7) / 20 + 1, payment_id, created_at,
       CASE WHEN pg_temp.pick('partial', payment_id, 3) = 0 THEN round(amount / 2, 2) ELSE amount END,
       (ARRAY['requested_by_customer', 'duplicate', 'fraudulent', 'product_not_received'])
           [1 + pg_temp.pick('reason', payment_id, 4)],
       created_at + (1 + pg_temp.pick('rdelay', payment_id, 240)) * interval '1 hour'
FROM payments.payments
WHERE status = 'refunded';

-- step: receipts
INSERT INTO payments.receipts (payment_id, payment_created_at, issued_at, document)
SELECT payment_id, created_at, created_at + interval '2 seconds',
       convert_to(E'%PDF-1.4\n% receipt ' || payment_id || ' ' || amount || ' ' || currency || E'\n', 'UTF8')
       || decode(repeat(md5('receipt:' || payment_id), 6), 'hex')
FROM payments.payments
WHERE status IN ('captured', 'refunded', 'disputed') AND payment_id % 5 = 0;

-- step: invoices
-- Ordered, so each invoice takes the same number from the sequence on every load.
INSERT INTO payments.invoices (merchant_id, period, payments, total, currency, issued_at)
SELECT merchant_id, period, count, total, currency, period + interval '1 month 6 hours'
FROM (SELECT merchant_id, date_trunc('month', created_at)::date AS period, count(*) AS count,
             sum(amount) AS total, min(currency) AS currency
      FROM payments.payments
      WHERE status IN ('captured', 'refunded', 'disputed')
      GROUP BY 1, 2
      ORDER BY 2, 1) AS monthly;

-- step: statements
-- Yearly statements of the largest merchants, stored as large objects (about 128 kB each).
INSERT INTO payments.statements (merchant_id, year, document)
SELECT m, 2024,
       lo_from_bytea(424200 + m,
                     convert_to('Statement 2024 for merchant ' || m || E'\n', 'UTF8')
                     || (SELECT decode(string_agg(md5('stmt:' || m || ':' || i), '' ORDER BY i), 'hex')
                         FROM generate_series(1, 8000) AS i))
FROM generate_series(1, 3) AS m;

-- step: ledger accounts
INSERT INTO ledger.accounts (account_id, owner_kind, customer_id, merchant_id, currency, opened_at)
SELECT customer_id, 'customer', customer_id, NULL, pg_temp.currency(customer_id), created_at
FROM payments.customers
UNION ALL
SELECT 1000000000 + merchant_id, 'merchant', NULL, merchant_id, settlement_currency, created_at
FROM payments.merchants;

-- step: ledger entries
-- Every captured payment debits the customer and credits the merchant; a refund reverses it.
-- Ordered, so the identity numbers entries the same way on every load.
INSERT INTO ledger.entries
    (account_id, payment_id, payment_created_at, direction, amount, currency, posted_at)
SELECT account_id, payment_id, payment_created_at, direction, amount, currency, posted_at
FROM (SELECT p.payment_id, p.created_at AS payment_created_at, p.amount, p.currency,
             p.created_at + interval '1 minute' AS posted_at, p.customer_id, p.merchant_id
      FROM payments.payments AS p
      WHERE p.status IN ('captured', 'refunded', 'disputed')) AS p,
     LATERAL (VALUES (p.customer_id, 'D'), (1000000000 + p.merchant_id, 'C')) AS e(account_id, direction)
UNION ALL
SELECT account_id, r.payment_id, r.payment_created_at, direction, r.amount, p.currency, r.created_at
FROM payments.refunds AS r
     JOIN payments.payments AS p ON p.payment_id = r.payment_id AND p.created_at = r.payment_created_at,
     LATERAL (VALUES (1000000000 + p.merchant_id, 'D'), (p.customer_id, 'C')) AS e(account_id, direction)
ORDER BY posted_at, payment_id, direction;

-- step: audit events
INSERT INTO audit.events (occurred_at, actor, action, entity, entity_id, detail)
SELECT timestamptz '2024-01-01 00:00+00' + g * (interval '396 days' / pg_temp.n(30000)),
       CASE WHEN pg_temp.pick('who', g, 5) = 0 THEN 'system'
            ELSE 'user:' || (1 + pg_temp.pick('user', g, 40)) END,
       action,
       split_part(action, '.', 1),
       1 + pg_temp.pick('id', g, pg_temp.n(100000)),
       CASE WHEN g % 5 = 0 THEN NULL
            ELSE jsonb_build_object('ip', '10.' || pg_temp.pick('ip1', g, 256) || '.'
                                           || pg_temp.pick('ip2', g, 256) || '.' || pg_temp.pick('ip3', g, 256),
                                    'request_id', md5('req:' || g)) END
FROM generate_series(1, pg_temp.n(30000)) AS g,
     LATERAL (SELECT (ARRAY['payment.created', 'payment.captured', 'refund.created',
                            'customer.updated', 'merchant.login', 'api_key.rotated'])
                     [1 + pg_temp.pick('action', g, 6)] AS action) AS a,
     -- one event in a thousand was delivered twice
     generate_series(1, CASE WHEN g % 1000 = 0 THEN 2 ELSE 1 END) AS copies;

-- step: keys and indexes
ALTER TABLE payments.merchants ADD PRIMARY KEY (merchant_id);
CREATE INDEX merchants_country_idx ON payments.merchants (country);

ALTER TABLE payments.customers ADD PRIMARY KEY (customer_id);
ALTER TABLE payments.customers ADD CONSTRAINT customers_email_key UNIQUE (email);
CREATE INDEX customers_country_created_idx ON payments.customers (country, created_at);

ALTER TABLE payments.payment_methods ADD PRIMARY KEY (method_id);
CREATE INDEX payment_methods_customer_idx ON payments.payment_methods (customer_id);

ALTER TABLE payments.payments ADD PRIMARY KEY (payment_id, created_at);
CREATE INDEX payments_merchant_created_idx ON payments.payments (merchant_id, created_at);
CREATE INDEX payments_customer_idx ON payments.payments (customer_id);
CREATE INDEX payments_open_idx ON payments.payments (status) WHERE status IN ('pending', 'disputed');

ALTER TABLE payments.refunds ADD PRIMARY KEY (refund_id);
CREATE INDEX refunds_payment_idx ON payments.refunds (payment_id, payment_created_at);

ALTER TABLE payments.receipts ADD PRIMARY KEY (payment_id, payment_created_at);

ALTER TABLE payments.invoices ADD PRIMARY KEY (invoice_no);
ALTER TABLE payments.invoices ADD CONSTRAINT invoices_merchant_period_key UNIQUE (merchant_id, period);

ALTER TABLE payments.statements ADD PRIMARY KEY (merchant_id, year);

ALTER TABLE ledger.accounts ADD PRIMARY KEY (account_id);
CREATE UNIQUE INDEX accounts_customer_idx ON ledger.accounts (customer_id) WHERE customer_id IS NOT NULL;
CREATE UNIQUE INDEX accounts_merchant_idx ON ledger.accounts (merchant_id) WHERE merchant_id IS NOT NULL;

ALTER TABLE ledger.entries ADD PRIMARY KEY (entry_id);
CREATE INDEX entries_account_posted_idx ON ledger.entries (account_id, posted_at);

CREATE INDEX events_occurred_idx ON audit.events (occurred_at);
CREATE INDEX events_entity_idx ON audit.events (entity, entity_id);

-- step: foreign keys
ALTER TABLE payments.payment_methods ADD FOREIGN KEY (customer_id) REFERENCES payments.customers;
ALTER TABLE payments.payments ADD FOREIGN KEY (merchant_id) REFERENCES payments.merchants;
ALTER TABLE payments.payments ADD FOREIGN KEY (customer_id) REFERENCES payments.customers;
ALTER TABLE payments.payments ADD FOREIGN KEY (method_id) REFERENCES payments.payment_methods;
ALTER TABLE payments.refunds ADD FOREIGN KEY (payment_id, payment_created_at) REFERENCES payments.payments;
ALTER TABLE payments.receipts ADD FOREIGN KEY (payment_id, payment_created_at) REFERENCES payments.payments;
ALTER TABLE payments.invoices ADD FOREIGN KEY (merchant_id) REFERENCES payments.merchants;
ALTER TABLE payments.statements ADD FOREIGN KEY (merchant_id) REFERENCES payments.merchants;
ALTER TABLE ledger.accounts ADD FOREIGN KEY (customer_id) REFERENCES payments.customers;
ALTER TABLE ledger.accounts ADD FOREIGN KEY (merchant_id) REFERENCES payments.merchants;
ALTER TABLE ledger.entries ADD FOREIGN KEY (account_id) REFERENCES ledger.accounts;

-- step: triggers, views and comments
CREATE TRIGGER merchants_touch BEFORE UPDATE ON payments.merchants
    FOR EACH ROW EXECUTE FUNCTION payments.touch_updated_at();
CREATE TRIGGER customers_touch BEFORE UPDATE ON payments.customers
    FOR EACH ROW EXECUTE FUNCTION payments.touch_updated_at();
CREATE TRIGGER payments_touch BEFORE UPDATE ON payments.payments
    FOR EACH ROW EXECUTE FUNCTION payments.touch_updated_at();

-- Some merchants were suspended later; the backfill states its own updated_at, which the
-- trigger keeps (a statement without one would get now(), and two loads would differ).
UPDATE payments.merchants
SET status = CASE WHEN merchant_id % 100 = 0 THEN 'closed' ELSE 'suspended' END,
    updated_at = created_at + interval '400 days'
WHERE merchant_id % 50 = 0;

CREATE VIEW ledger.account_balances AS
SELECT account_id, currency,
       sum(CASE direction WHEN 'C' THEN amount ELSE -amount END) AS balance,
       count(*) AS entries
FROM ledger.entries
GROUP BY account_id, currency;

CREATE MATERIALIZED VIEW payments.daily_totals AS
SELECT (created_at AT TIME ZONE 'UTC')::date AS day, currency, status,
       count(*) AS payments, sum(amount) AS amount, sum(fee) AS fees
FROM payments.payments
GROUP BY 1, 2, 3;
-- A unique index lets the dashboard refresh it CONCURRENTLY.
CREATE UNIQUE INDEX daily_totals_key ON payments.daily_totals (day, currency, status);

COMMENT ON TABLE payments.payments IS 'One row per payment attempt, partitioned by month of creation';
COMMENT ON COLUMN payments.payments.amount IS 'Charged amount in the merchant''s currency';
COMMENT ON COLUMN payments.payments.net_amount IS 'What the merchant receives: amount minus fee';
COMMENT ON COLUMN payments.payments.metadata IS 'Free-form data from the merchant''s API call';
COMMENT ON TABLE payments.refunds IS 'Money returned to the customer, in full or in part';
COMMENT ON TABLE payments.statements IS 'Yearly statements; the PDF is a large object';
COMMENT ON TABLE ledger.entries IS 'Double-entry postings: every payment balances to zero';
COMMENT ON COLUMN ledger.entries.direction IS 'D debit, C credit';
COMMENT ON TABLE audit.events IS 'Append-only and keyless: duplicates from client retries are kept';
COMMENT ON MATERIALIZED VIEW payments.daily_totals IS 'Per day, currency and status: refreshed nightly';

-- step: statistics
-- The copy plans its work from these (sizes, row estimates), as it would on a live database.
ANALYZE payments.merchants, payments.customers, payments.payment_methods, payments.payments,
        payments.refunds, payments.receipts, payments.invoices, payments.statements,
        ledger.accounts, ledger.entries, audit.events;
