#!/usr/bin/env bash
# Entrypoint of the postgres:15 stand-in: what the official image's docker-entrypoint.sh does,
# for the parts Switchboard uses.
# - Arguments starting with '-' are the server's (`postgres -c ...`); another command runs as is.
# - Started as root: makes PGDATA (a volume) and the socket directory the postgres user's, then
#   runs again as that user.
# - First start only (no PGDATA/PG_VERSION): initdb with POSTGRES_USER as the superuser and
#   POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) as its password (POSTGRES_INITDB_ARGS added);
#   pg_hba.conf gets `host all all all scram-sha-256` (POSTGRES_HOST_AUTH_METHOD changes the
#   method); a temporary server listening on the Unix socket only (so TCP health checks fail
#   until the real server is up) creates POSTGRES_DB (default POSTGRES_USER) and runs
#   /docker-entrypoint-initdb.d/*.sh and *.sql; it is stopped and the real server started.
# - The server listens on all addresses (listen_addresses = '*' in the configuration sample).
set -Eeo pipefail

if [ "${1:0:1}" = '-' ]; then
  set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
  exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA"
  chmod 00700 "$PGDATA"
  find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
  mkdir -p /var/run/postgresql
  chown postgres:postgres /var/run/postgresql
  chmod 03775 /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
  POSTGRES_PASSWORD=$(<"$POSTGRES_PASSWORD_FILE")
fi
export POSTGRES_USER=${POSTGRES_USER:-postgres}
export POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
auth_method=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth_method" != trust ]; then
    echo >&2 'Error: Database is uninitialized and superuser password is not specified.'
    echo >&2 '       Set POSTGRES_PASSWORD (or POSTGRES_HOST_AUTH_METHOD=trust to allow all connections without one).'
    exit 1
  fi
  pwargs=()
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    pwargs=(--pwfile="$pwfile")
  fi
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of arguments, as in the official image
  initdb --username="$POSTGRES_USER" "${pwargs[@]}" ${POSTGRES_INITDB_ARGS:-} -D "$PGDATA"
  [ -z "${pwfile:-}" ] || rm -f "$pwfile"
  printf '\nhost all all all %s\n' "$auth_method" >>"$PGDATA/pg_hba.conf"

  PGUSER=$POSTGRES_USER PGPASSWORD=${POSTGRES_PASSWORD:-} \
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
  psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
  if [ "$POSTGRES_DB" != postgres ]; then
    "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) echo "running $f"; . "$f" ;;
      *.sql) echo "running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
      *) [ ! -e "$f" ] || echo "ignoring $f" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop
  echo
  echo 'PostgreSQL init process complete; ready for start up.'
  echo
else
  echo
  echo 'PostgreSQL Database directory appears to contain a database; Skipping initialization'
  echo
fi

exec "$@"
