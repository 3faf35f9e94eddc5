"""SQLite's functions, in PostgreSQL: the store's queries are written once, in SQLite's dialect, and
these make the ones PostgreSQL lacks mean the same there (json_extract, json_type, json_each on text, sum over
booleans, group_concat) instead of each query being written twice. Also `rowid`: SQLite's hidden
row number, which `tapgate top` follows to see calls in the order they were written.

Installed once per database (a marker function carries the version), by whichever reader or CLI
edit comes first, under the schema's advisory lock."""

from __future__ import annotations

from core.pg.schema import LOCK

VERSION = 2
MARKER = f"tapgate_functions_v{VERSION}"

# json_extract(json text, path) as SQLite gives it: strings as text, numbers as their text, true and
# false as 1 and 0, null as NULL, objects and arrays as JSON text. One return type (text) where SQLite
# has several: callers compare with text, and the reading adapter sends every value as text.
JSON_EXTRACT = r"""
CREATE OR REPLACE FUNCTION tapgate_json_path(path text) RETURNS text[] LANGUAGE sql IMMUTABLE AS $f$
  SELECT coalesce(array_agg(coalesce(replace(replace(m[1], '\"', '"'), '\\', '\'), m[2], m[3]) ORDER BY n),
                  '{}')
  FROM regexp_matches(substr(path, 2), '\."((?:[^"\\]|\\.)*)"|\.([^.\[]+)|\[(\d+)\]', 'g') WITH ORDINALITY
    AS t(m, n)
$f$;
CREATE OR REPLACE FUNCTION tapgate_json_sql(v jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS $f$
  SELECT CASE jsonb_typeof(v) WHEN 'string' THEN v #>> '{}' WHEN 'null' THEN NULL
    WHEN 'boolean' THEN CASE WHEN v = 'true'::jsonb THEN '1' ELSE '0' END ELSE v::text END
$f$;
"""


def at_path(name: str, of: str) -> str:
    """SQLite's `name(json, path)`, for a document as text or as jsonb: `of` of the value at the path."""
    return "".join(f"""CREATE OR REPLACE FUNCTION {name}(doc {kind}, path text) RETURNS text LANGUAGE sql IMMUTABLE AS $f$
  SELECT {of}(doc{cast} #> tapgate_json_path(path))
$f$;
""" for kind, cast in (("text", "::jsonb"), ("jsonb", "")))


JSON_EXTRACT += at_path("json_extract", "tapgate_json_sql")

# json_type(json, path) as SQLite's: integer, real, text, true, false, null, object or array; what a
# reader needs to give json_extract's text the type SQLite gives it (2, not "2").
JSON_TYPE = r"""
CREATE OR REPLACE FUNCTION tapgate_json_type(v jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS $f$
  SELECT CASE jsonb_typeof(v) WHEN 'string' THEN 'text' WHEN 'boolean' THEN v #>> '{}'
    WHEN 'number' THEN CASE WHEN v::text ~ '^-?[0-9]+$' THEN 'integer' ELSE 'real' END ELSE jsonb_typeof(v) END
$f$;
""" + at_path("json_type", "tapgate_json_type")

# json_each(text) as SQLite's: rows (key, value) of an object or an array, value as json_extract gives it.
JSON_EACH = r"""
CREATE OR REPLACE FUNCTION json_each(doc text) RETURNS TABLE(key text, value text) LANGUAGE sql IMMUTABLE AS $f$
  SELECT e.key, tapgate_json_sql(e.value) FROM jsonb_each(CASE jsonb_typeof(doc::jsonb)
    WHEN 'object' THEN doc::jsonb END) e
  UNION ALL
  SELECT (a.n - 1)::text, tapgate_json_sql(a.value) FROM jsonb_array_elements(CASE jsonb_typeof(doc::jsonb)
    WHEN 'array' THEN doc::jsonb END) WITH ORDINALITY AS a(value, n)
$f$;
"""

# sum(x IS NULL AND ...) counts rows in SQLite, where a comparison is 0 or 1; group_concat, json_array and
# json_group_array as the followers' change checks use them (columns of text).
AGGREGATES = r"""
CREATE OR REPLACE FUNCTION tapgate_sum_bool(total bigint, b boolean) RETURNS bigint LANGUAGE sql IMMUTABLE AS $f$
  SELECT coalesce(total, 0) + coalesce(b::int, 0)
$f$;
CREATE OR REPLACE AGGREGATE sum(boolean) (SFUNC = tapgate_sum_bool, STYPE = bigint);
CREATE OR REPLACE FUNCTION tapgate_concat(acc text, item text) RETURNS text LANGUAGE sql IMMUTABLE AS $f$
  SELECT CASE WHEN item IS NULL THEN acc WHEN acc IS NULL THEN item ELSE acc || ',' || item END
$f$;
CREATE OR REPLACE AGGREGATE group_concat(text) (SFUNC = tapgate_concat, STYPE = text);
CREATE OR REPLACE FUNCTION json_array(VARIADIC items text[]) RETURNS text LANGUAGE sql IMMUTABLE AS $f$
  SELECT array_to_json(items)::text
$f$;
CREATE OR REPLACE FUNCTION tapgate_json_array_of(items text[]) RETURNS text LANGUAGE sql IMMUTABLE AS $f$
  SELECT coalesce(array_to_json(items)::text, '[]')
$f$;
CREATE OR REPLACE AGGREGATE json_group_array(text) (SFUNC = array_append, STYPE = text[],
  FINALFUNC = tapgate_json_array_of, INITCOND = '{}');
"""

# rowid: numbered as rows arrive (a sequence), hidden from SELECT * by the reading adapter.
ROWID = """
CREATE SEQUENCE IF NOT EXISTS requests_rowid_seq;
ALTER TABLE requests ADD COLUMN IF NOT EXISTS rowid bigint DEFAULT nextval('requests_rowid_seq');
CREATE INDEX IF NOT EXISTS requests_rowid ON requests (rowid);
"""


def installed(conn) -> bool:
    return conn.execute("SELECT to_regprocedure(%s) IS NOT NULL", (f"{MARKER}()",)).fetchone()[0]


def install(conn) -> bool:
    """Create the functions (and `rowid`, when the calls table exists) unless this version is there;
    whether it created them. `conn` is a psycopg connection; the schema should be installed first."""
    if installed(conn):
        return False
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
        if installed(conn):  # another process installed them while this one waited
            return False
        for block in (JSON_EXTRACT, JSON_TYPE, JSON_EACH, AGGREGATES):
            conn.execute(block)
        has_requests = conn.execute("SELECT to_regclass('requests') IS NOT NULL").fetchone()[0]
        if has_requests:
            conn.execute(ROWID)
            conn.execute(f"CREATE FUNCTION {MARKER}() RETURNS int LANGUAGE sql AS 'SELECT {VERSION}'")
    return True
