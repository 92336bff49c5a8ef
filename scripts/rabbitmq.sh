#!/usr/bin/env bash
# Start, stop or check one RabbitMQ node bound to 127.0.0.1 only, without
# systemd. Several nodes can run side by side (the demo's, the test suite's,
# a test cluster's): each has its own name, ports and directory.
#
#   scripts/rabbitmq.sh start|stop|status
#
# The node (defaults: the demo's):
#   RMQ_NAME       short node name, the node is NAME@localhost   (rabbit)
#   RMQ_PORT       AMQP port                                     (5672)
#   RMQ_MGMT_PORT  management HTTP port                          (15672)
#   RMQ_DIST_PORT  Erlang distribution port                      (RMQ_PORT + 20000)
#   RMQ_BASE       the node's data, logs and config              (/var/lib/codebench-rabbitmq/NAME)
#   RMQ_FRESH=1    start from an empty state: RMQ_BASE is wiped first
#   RMQ_CONF       extra lines for rabbitmq.conf
# Credentials: RABBITMQ_USER / RABBITMQ_PASSWORD (default admin/admin, like
# the seed's docker-compose); the built-in guest user stays, loopback-only.
# After a start, codebench's durable topology is declared (bin/codebench
# declare), so a job published right away is kept, not dropped as unroutable.
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=${1:-start}
user=${RABBITMQ_USER:-admin}
pass=${RABBITMQ_PASSWORD:-admin}
name=${RMQ_NAME:-rabbit}
port=${RMQ_PORT:-5672}
mgmt=${RMQ_MGMT_PORT:-15672}
dist=${RMQ_DIST_PORT:-$((port + 20000))}
base=${RMQ_BASE:-/var/lib/codebench-rabbitmq/$name}
node=$name@localhost

# Everything about the node comes from here, not from /etc/rabbitmq, so
# nodes do not share configuration by accident.
export RABBITMQ_NODENAME=$node RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$port RABBITMQ_DIST_PORT=$dist
export RABBITMQ_MNESIA_BASE=$base/mnesia RABBITMQ_LOG_BASE=$base/log RABBITMQ_PID_FILE=$base/pid
export RABBITMQ_CONFIG_FILE=$base/rabbitmq.conf RABBITMQ_ENABLED_PLUGINS_FILE=$base/enabled_plugins
export RABBITMQ_CONF_ENV_FILE=$base/rabbitmq-env.conf RABBITMQ_ADVANCED_CONFIG_FILE=$base/advanced.config
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
# Every Erlang tool started below (rabbitmqctl too) may start epmd: loopback.
export ERL_EPMD_ADDRESS=127.0.0.1

ctl() { rabbitmqctl -q -n "$node" "$@"; }
running() { ctl status >/dev/null 2>&1; }

configure() {
  mkdir -p "$base/log" "$base/mnesia"
  : >"$base/rabbitmq-env.conf"
  cat >"$base/rabbitmq.conf" <<CONF
# written by codebench scripts/rabbitmq.sh: loopback only
listeners.tcp.default = 127.0.0.1:$port
management.tcp.ip = 127.0.0.1
management.tcp.port = $mgmt
loopback_users.guest = true
${RMQ_CONF:-}
CONF
  echo '[rabbitmq_management].' >"$base/enabled_plugins"
  echo '[].' >"$base/advanced.config"
  # Debian's rabbitmq-server runs the node as the rabbitmq user.
  if id rabbitmq >/dev/null 2>&1; then chown -R rabbitmq:rabbitmq "$base"; fi
}

# add_user NAME CONFIGURE WRITE READ: a user with those permissions on /
# and a password in $base/NAME.password (made once, mode 0600).
add_user() {
  local name=$1 pwfile=$base/$1.password users
  if [ ! -s "$pwfile" ]; then
    (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$pwfile")
  fi
  users=$(ctl list_users)
  if grep -q "^$name\b" <<<"$users"; then
    ctl change_password "$name" "$(cat "$pwfile")" >/dev/null
  else
    ctl add_user "$name" "$(cat "$pwfile")" >/dev/null
  fi
  ctl set_permissions -p / "$name" "$2" "$3" "$4" >/dev/null
}

case "$cmd" in
start)
  if [ "${RMQ_FRESH:-}" = 1 ]; then
    if running; then ctl stop >/dev/null 2>&1 || true; fi
    rm -rf "$base"
  fi
  configure
  if running; then echo "rabbitmq: $node already running"; else
    echo "rabbitmq: starting $node (loopback only, AMQP $port, management $mgmt, data $base)"
    # setsid: the server must outlive the shell that started it (make demo).
    setsid nohup rabbitmq-server >"$base/log/start.log" 2>&1 </dev/null &
    pid=$!
    for _ in $(seq 120); do
      running && break
      kill -0 "$pid" 2>/dev/null || { echo "rabbitmq: $node exited during start:"; tail -30 "$base/log/start.log"; exit 1; }
      sleep 1
    done
    ctl await_startup || { tail -50 "$base/log/start.log"; exit 1; }
  fi
  users=$(ctl list_users)
  if ! grep -q "^$user\b" <<<"$users"; then
    ctl add_user "$user" "$pass" >/dev/null
  else
    ctl change_password "$user" "$pass" >/dev/null
  fi
  ctl set_user_tags "$user" administrator >/dev/null
  ctl set_permissions -p / "$user" '.*' '.*' '.*' >/dev/null
  # The users a deployment should have (docs/OPERATIONS.md), each with a
  # random password kept in a file of the node's: the worker, which alone
  # writes statuses (its user_id on them, checked by the broker), a
  # producer, which may write jobs and read only the reply queues the
  # broker names for it, and the API.
  add_user codebench-worker \
    '^(jobs|jobs\.dead|jobs_ex|job_status_.*)$' \
    '^(amq\.default|jobs|jobs\.dead|jobs_ex|job_status_.*)$' \
    '^(jobs|jobs_ex)$'
  add_user codebench-producer '^amq\.gen-.*$' '^jobs_ex$' '^amq\.gen-.*$'
  # The HTTP API (codebench api): it declares and reads its own reply
  # queues and publishes jobs through jobs_ex (write on the default
  # exchange would let it write any queue); the workers send a reply queue
  # of its namespace statuses only for jobs this user published.
  add_user codebench-api '^codebench\.api\..*$' '^jobs_ex$' '^codebench\.api\..*$'

  if [ -x bin/codebench ]; then
    # The api topology: jobs, and the exchange jobs_ex bound to it (the
    # API's own user and producers publish there; the seed's producers
    # still publish to jobs on the default exchange).
    CODEBENCH_TOPOLOGY=api RABBITMQ_URL="amqp://$user:$pass@127.0.0.1:$port/" bin/codebench declare | sed 's/^/rabbitmq: /'
  fi
  echo "rabbitmq: ready on 127.0.0.1:$port (management http://127.0.0.1:$mgmt, user $user)"
  ;;
stop)
  if running; then ctl stop && echo "rabbitmq: $node stopped"; else echo "rabbitmq: $node not running"; fi
  ;;
status)
  if running; then echo "rabbitmq: $node running"; else echo "rabbitmq: $node not running"; exit 1; fi
  ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
