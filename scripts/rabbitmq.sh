#!/usr/bin/env bash
# Start or stop a RabbitMQ server bound to 127.0.0.1 only (AMQP 5672, management
# 15672, Erlang distribution 25672, epmd 4369), without systemd.
# Credentials: RABBITMQ_USER / RABBITMQ_PASSWORD (default admin/admin, like the
# seed's docker-compose); the built-in guest user stays, loopback-only.
set -euo pipefail
cmd=${1:-start}
user=${RABBITMQ_USER:-admin}
pass=${RABBITMQ_PASSWORD:-admin}
# Every Erlang tool started below (rabbitmqctl too) may start epmd: loopback.
export ERL_EPMD_ADDRESS=127.0.0.1

configure() {
  mkdir -p /etc/rabbitmq
  # Ours to own: written on every start so a change here takes effect.
  cat >/etc/rabbitmq/rabbitmq-env.conf <<'CONF'
# written by codebench scripts/rabbitmq.sh: loopback only
NODENAME=rabbit@localhost
NODE_IP_ADDRESS=127.0.0.1
NODE_PORT=5672
DIST_PORT=25672
SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
CONF
  cat >/etc/rabbitmq/rabbitmq.conf <<'CONF'
# written by codebench scripts/rabbitmq.sh: loopback only
listeners.tcp.default = 127.0.0.1:5672
management.tcp.ip = 127.0.0.1
management.tcp.port = 15672
CONF
  echo '[rabbitmq_management].' >/etc/rabbitmq/enabled_plugins
}

running() { rabbitmqctl -q status >/dev/null 2>&1; }

case "$cmd" in
start)
  configure
  if running; then echo "rabbitmq: already running"; else
    echo "rabbitmq: starting (loopback only)"
    # setsid: the server must outlive the shell that started it (make demo).
    mkdir -p /var/log/rabbitmq
    setsid nohup rabbitmq-server >/var/log/rabbitmq/codebench-start.log 2>&1 </dev/null &
    pid=$!
    for _ in $(seq 120); do
      running && break
      kill -0 "$pid" 2>/dev/null || { echo "rabbitmq: server exited during start:"; tail -30 /var/log/rabbitmq/codebench-start.log; exit 1; }
      sleep 1
    done
    rabbitmqctl -q await_startup || { tail -50 /var/log/rabbitmq/codebench-start.log; exit 1; }
  fi
  if ! rabbitmqctl -q list_users | grep -q "^$user\b"; then
    rabbitmqctl -q add_user "$user" "$pass"
  else
    rabbitmqctl -q change_password "$user" "$pass"
  fi
  rabbitmqctl -q set_user_tags "$user" administrator
  rabbitmqctl -q set_permissions -p / "$user" '.*' '.*' '.*'
  echo "rabbitmq: ready on 127.0.0.1:5672 (management http://127.0.0.1:15672, user $user)"
  ;;
stop)
  if running; then rabbitmqctl -q stop && echo "rabbitmq: stopped"; else echo "rabbitmq: not running"; fi
  ;;
status)
  running && echo "rabbitmq: running" || { echo "rabbitmq: not running"; exit 1; }
  ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
