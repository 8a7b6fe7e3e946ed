#!/usr/bin/env bash
# The local services the tests use: PostgreSQL (127.0.0.1:5432, user postgres, trust auth,
# database `test`) and RabbitMQ (127.0.0.1:5672, guest/guest, stream queues).
# Kafka is Tansu, started by the tests themselves on a free port.
#
# On a machine without them (Debian or Ubuntu), installs both from the distribution's
# packages with apt-get, as root or through sudo, then configures them; when they are
# installed, only starts them if they are stopped.
set -u

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

wait_port() {  # host port seconds
  local deadline=$(( $(date +%s) + $3 ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 1
  done
  return 1
}

apt_install() {  # package...
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "services: $* missing and no apt-get here; install them by hand (README, 'Tests on a fresh machine')" >&2
    exit 1
  fi
  echo "services: installing $* (apt-get)"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q || exit 1
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" || exit 1
}

pg_version() { ls /etc/postgresql 2>/dev/null | sort -V | tail -n1; }

# --- PostgreSQL --------------------------------------------------------------------------
if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(pg_version)" ]; then
  apt_install postgresql
  version="$(pg_version)"
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  # Trust for local TCP connections only (what the tests' URLs use): first matching line wins.
  if ! $SUDO grep -q "^host all all 127.0.0.1/32 trust" "$hba"; then
    $SUDO sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  fresh_pg=1
fi

if ! wait_port 127.0.0.1 5432 1; then
  echo "services: starting PostgreSQL"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$(pg_version)" main start || true
  wait_port 127.0.0.1 5432 60 || { echo "services: PostgreSQL did not start" >&2; exit 1; }
fi
if [ "${fresh_pg:-0}" = 1 ]; then
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$(pg_version)" main reload || true
  if ! psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1; then
    psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE test" >/dev/null || exit 1
  fi
fi

# --- RabbitMQ ----------------------------------------------------------------------------
if ! command -v rabbitmq-server >/dev/null 2>&1; then
  apt_install rabbitmq-server
  # Stream queues are used over AMQP; the stream plugin adds the native stream protocol.
  $SUDO rabbitmq-plugins enable --offline rabbitmq_stream >/dev/null || true
fi

if ! wait_port 127.0.0.1 5672 1; then
  echo "services: starting RabbitMQ"
  if $SUDO rabbitmqctl -q status >/dev/null 2>&1; then
    $SUDO rabbitmqctl start_app || true        # node up, app stopped (e.g. after a fault test)
  else
    $SUDO rabbitmq-server -detached || true
  fi
  wait_port 127.0.0.1 5672 120 || { echo "services: RabbitMQ did not start" >&2; exit 1; }
fi
echo "services: PostgreSQL and RabbitMQ are up"

# --- The UI check's browser --------------------------------------------------------------
# tests/e2e/ui_check.py drives Debian's chromium through Playwright (which downloads
# nothing); installed here so the page checks run on a fresh machine instead of skipping.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  apt_install chromium
fi
