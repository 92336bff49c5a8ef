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
# On a host whose KVM cannot boot the guest, QEMU falls back to TCG, which
# is not a security boundary: fine for a demo on your own machine, and the
# worker says so loudly in its log.
export CODEBENCH_ALLOW_TCG=${CODEBENCH_ALLOW_TCG:-1}

if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "demo: worker already running (pid $(cat "$pidfile"))"
else
  echo "demo: starting the worker (log: $log)"
  setsid nohup bin/codebench worker >"$log" 2>&1 </dev/null &
  echo $! >"$pidfile"
fi

# A previous demo's statuses would add to the count.
curl -s -o /dev/null -u "$user:$pass" -X DELETE "$api/queues/%2F/job_status_666" || true

echo "demo: publishing the seed's job:"
echo "  curl 'http://localhost:15672/api/exchanges/%2F/amq.default/publish' -u $user:$pass -d '@examples/seed/req.json'"
printf '  '; curl -s "$api/exchanges/%2F/amq.default/publish" -u "$user:$pass" -d '@examples/seed/req.json'; echo

echo "demo: waiting for the final status (the first boot under TCG takes a few seconds)..."
for _ in $(seq 180); do
  n=$(curl -s -u "$user:$pass" "$api/queues/%2F/job_status_666" | jq -r '.messages // 0' 2>/dev/null || echo 0)
  [ "$n" = 3 ] && break
  if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then echo "demo: the worker died:"; tail -20 "$log"; exit 1; fi
  sleep 1
done
echo "demo: job_status_666 (as the seed's 'rabbitmqadmin get queue=job_status_666 count=3 ackmode=ack_requeue_false'):"
curl -s -u "$user:$pass" -H 'content-type: application/json' "$api/queues/%2F/job_status_666/get" \
  -d '{"count":3,"ackmode":"ack_requeue_false","encoding":"auto"}' |
  jq -r '.[] | "  \(.payload_bytes) bytes  \(.payload)"'
final=$(grep -c '"job finished"' "$log" || true)
echo "demo: done. The worker keeps running (pid $(cat "$pidfile")); stop it and RabbitMQ with: make stop"
[ "$final" -ge 1 ]
