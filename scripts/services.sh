#!/usr/bin/env bash
# Start the local services the tests use, if they are not running: PostgreSQL and RabbitMQ.
# (Kafka is Tansu, started by the tests themselves on a free port.)
set -u

wait_port() {  # host port seconds
  local deadline=$(( $(date +%s) + $3 ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 1
  done
  return 1
}

if ! wait_port 127.0.0.1 5432 1; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  wait_port 127.0.0.1 5432 60 || { echo "services: PostgreSQL did not start" >&2; exit 1; }
fi

if ! wait_port 127.0.0.1 5672 1; then
  echo "services: starting RabbitMQ"
  if rabbitmqctl -q status >/dev/null 2>&1; then
    rabbitmqctl start_app || true        # node up, app stopped (e.g. after a fault test)
  else
    rabbitmq-server -detached || true
  fi
  wait_port 127.0.0.1 5672 120 || { echo "services: RabbitMQ did not start" >&2; exit 1; }
fi
echo "services: PostgreSQL and RabbitMQ are up"
