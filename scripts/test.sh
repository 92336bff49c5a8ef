#!/usr/bin/env bash
# make test: every test, unit and integration, against a RabbitMQ node of its
# own that starts from an empty state (a fresh data dir per run, so nothing a
# previous run declared can hide a first-run bug) and is stopped afterwards.
# Its ports (AMQP 5673, management 15673) leave the demo's broker alone.
# Likewise a throwaway PostgreSQL cluster (loopback, port 5434) for the API's
# store tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export RMQ_NAME=codebench-test RMQ_PORT=${TEST_RABBITMQ_PORT:-5673} RMQ_MGMT_PORT=${TEST_RABBITMQ_MGMT_PORT:-15673}
RMQ_BASE=$(mktemp -d /tmp/codebench-rabbitmq-test.XXXXXX)
export RMQ_BASE RMQ_FRESH=1
user=${RABBITMQ_USER:-admin}; pass=${RABBITMQ_PASSWORD:-admin}
PG_BASE=$(mktemp -d /tmp/codebench-postgres-test.XXXXXX)
export PG_BASE PG_PORT=${TEST_POSTGRES_PORT:-5434}
trap 'scripts/rabbitmq.sh stop || true; scripts/postgres.sh stop || true; rm -rf "$RMQ_BASE" "$PG_BASE"' EXIT
scripts/rabbitmq.sh start
scripts/postgres.sh start
# Integration tests must not skip here: a missing VM or broker is a failure.
# QEMU must run jailed here (the jail tests fail, not skip, without it).
CODEBENCH_REQUIRE_VM=1 CODEBENCH_REQUIRE_GVISOR=1 CODEBENCH_REQUIRE_RABBITMQ=1 CODEBENCH_REQUIRE_NETWORK=1 CODEBENCH_QEMU_JAIL=on \
  CODEBENCH_REQUIRE_POSTGRES=1 CODEBENCH_REQUIRE_NODE=1 CODEBENCH_TEST_POSTGRES_URL="$(scripts/postgres.sh url)" \
  RABBITMQ_URL="amqp://$user:$pass@127.0.0.1:$RMQ_PORT/" \
  RABBITMQ_MANAGEMENT_URL="http://127.0.0.1:$RMQ_MGMT_PORT" \
  RABBITMQ_NODENAME="$RMQ_NAME@localhost" \
  go test -count=1 -timeout 45m "${@:-./...}"
