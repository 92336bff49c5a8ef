#!/usr/bin/env bash
# The seed worker's demo, on our worker: start the worker, publish the seed's
# exact job through the RabbitMQ management API (as the seed README does) and
# print the three statuses of job_status_666.
set -euo pipefail
cd "$(dirname "$0")/.."
user=${RABBITMQ_USER:-admin}
pass=${RABBITMQ_PASSWORD:-admin}
api=http://127.0.0.1:15672/api
pidfile=/run/codebench-worker.pid
log=/var/log/codebench-worker.log

export RABBITMQ_URL=${RABBITMQ_URL:-amqp://$user:$pass@127.0.0.1:5672/}
# The HTTP API connects as its own broker user (scripts/rabbitmq.sh made it,
# its password in the node's directory); the worker reads the same setting
# to know which user may name the API's reply queues.
rmqbase=${RMQ_BASE:-/var/lib/codebench-rabbitmq/${RMQ_NAME:-rabbit}}
if [ -z "${CODEBENCH_API_RABBITMQ_URL:-}" ] && [ -s "$rmqbase/codebench-api.password" ]; then
  apipw=$(cat "$rmqbase/codebench-api.password")
  export CODEBENCH_API_RABBITMQ_URL="amqp://codebench-api:$apipw@127.0.0.1:5672/"
fi
# The worker picks its sandbox (CODEBENCH_DRIVER=auto): a KVM microVM where
# KVM boots the guest, else gVisor; it refuses QEMU's software emulation
# (TCG, no security boundary) unless CODEBENCH_ALLOW_TCG=1.

# start_daemon NAME PIDFILE LOG COMMAND...: start one of the demo's
# daemons in the background, unless it runs already.
start_daemon() {
  local name=$1 pidf=$2 logf=$3
  shift 3
  if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
    echo "demo: $name already running (pid $(cat "$pidf"))"
  else
    echo "demo: starting the $name (log: $logf)"
    setsid nohup "$@" >"$logf" 2>&1 </dev/null &
    echo $! >"$pidf"
  fi
}

start_daemon worker "$pidfile" "$log" bin/codebench worker

# A previous demo's statuses would add to the count.
curl -s -o /dev/null -u "$user:$pass" -X DELETE "$api/queues/%2F/job_status_666" || true

echo "demo: publishing the seed's job:"
echo "  curl 'http://localhost:15672/api/exchanges/%2F/amq.default/publish' -u $user:$pass -d '@examples/seed/req.json'"
answer=$(curl -s "$api/exchanges/%2F/amq.default/publish" -u "$user:$pass" -d '@examples/seed/req.json' || true)
echo "  $answer"
if [ "$(jq -r '.routed' <<<"$answer" 2>/dev/null)" != true ]; then
  echo "demo: FAILED: RabbitMQ did not route the job (answer: ${answer:-none}), so it was dropped." >&2
  echo "demo: the queue 'jobs' should exist: scripts/rabbitmq.sh and the worker declare it (bin/codebench declare does too)." >&2
  exit 1
fi

# A fresh machine builds the snapshot template first (one boot and a
# hello-world per language): minutes under TCG. The job waits in the queue.
echo "demo: waiting for the final status (on a first run with a KVM microVM the worker builds its snapshot template first)..."
last=""
for i in $(seq 900); do
  n=$(curl -s -u "$user:$pass" "$api/queues/%2F/job_status_666" | jq -r 'if type == "object" then (.messages // 0) else 0 end' 2>/dev/null || echo 0)
  [ "$n" = 3 ] && break
  if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then echo "demo: the worker died:"; tail -20 "$log"; exit 1; fi
  if (( i % 15 == 0 )); then
    now=$(grep -o 'msg="[^"]*"' "$log" | tail -1 || true)
    [ "$now" != "$last" ] && echo "demo: worker: ${now#msg=}"
    last=$now
  fi
  sleep 1
done
if [ "$n" != 3 ]; then echo "demo: FAILED: no final status within 15 minutes; the worker's log:" >&2; tail -30 "$log" >&2; exit 1; fi
echo "demo: job_status_666 (as the seed's 'rabbitmqadmin get queue=job_status_666 count=3 ackmode=ack_requeue_false'):"
curl -s -u "$user:$pass" -H 'content-type: application/json' "$api/queues/%2F/job_status_666/get" \
  -d '{"count":3,"ackmode":"ack_requeue_false","encoding":"auto"}' |
  jq -r 'if type == "array" then .[] | "  \(.payload_bytes) bytes  \(.payload)" else "demo: unexpected answer: \(.)" end'
final=$(grep -c '"job finished"' "$log" || true)
echo "demo: the worker's sandbox: $(grep -o 'env="[^"]*"' "$log" | head -1 | sed 's/^env=//')"
[ "$final" -ge 1 ]

# The HTTP API (Judge0 CE 1.13.1 and Piston v2) and its playground, in front
# of the same worker (docs/API.md).
apipid=/run/codebench-api.pid
apilog=/var/log/codebench-api.log
apiaddr=${CODEBENCH_API_ADDR:-127.0.0.1:2358}
start_daemon "API on $apiaddr" "$apipid" "$apilog" env CODEBENCH_API_ADDR="$apiaddr" bin/codebench api
# Ready: its store open and the broker connected.
for _ in $(seq 300); do curl -sf -o /dev/null "http://$apiaddr/readyz" && break; sleep 0.1; done
echo "demo: the same hello world through Judge0's API:"
echo "  curl -s -X POST 'http://$apiaddr/submissions?wait=true' -H 'Content-Type: application/json' -d @examples/judge0/hello-c.json"
curl -s -X POST "http://$apiaddr/submissions?wait=true" -H 'Content-Type: application/json' -d @examples/judge0/hello-c.json | sed 's/^/  /'
echo

# Long-lived sandboxes for the E2B SDK (docs/SANDBOXES.md).
sbxpid=/run/codebench-sandboxes.pid
sbxlog=/var/log/codebench-sandboxes.log
sbxaddr=${CODEBENCH_SANDBOXES_ADDR:-127.0.0.1:2359}
start_daemon "sandbox host on $sbxaddr" "$sbxpid" "$sbxlog" env CODEBENCH_SANDBOXES_ADDR="$sbxaddr" bin/codebench sandboxes
for _ in $(seq 600); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-API-KEY: demo' "http://$sbxaddr/v2/sandboxes")" = 200 ] && break
  if ! kill -0 "$(cat "$sbxpid")" 2>/dev/null; then echo "demo: the sandbox host died:"; tail -20 "$sbxlog"; exit 1; fi
  sleep 0.1
done
created=$(curl -s -X POST -H 'X-API-KEY: demo' -H 'Content-Type: application/json' -d '{"metadata":{"from":"make demo"}}' "http://$sbxaddr/v2/sandboxes")
sbx=$(echo "$created" | jq -r .sandboxID)
echo "demo: a sandbox for the E2B SDK: $(echo "$created" | jq -c '{sandboxID, envdVersion}'), killed: $(curl -s -o /dev/null -w '%{http_code}' -X DELETE -H 'X-API-KEY: demo' "http://$sbxaddr/sandboxes/$sbx")"
echo "demo: the unmodified E2B SDK (npm e2b, Node.js 20.18 or newer) drives it with:"
echo "  export E2B_API_URL=http://$sbxaddr E2B_SANDBOX_URL=http://$sbxaddr E2B_API_KEY=any-key"
echo
echo "demo: done. The playground: http://$apiaddr/ (an SSH tunnel reaches it: ssh -L 2358:$apiaddr HOST)"
echo "demo: the worker (pid $(cat "$pidfile")), the API (pid $(cat "$apipid")) and the sandbox host (pid $(cat "$sbxpid")) keep running; stop them and RabbitMQ with: make stop"
