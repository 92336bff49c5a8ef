// codebench bench --sandboxes: the unmodified E2B SDK (internal/e2bsdk)
// timing codebench sandboxes, as a client sees them: each figure is an SDK
// call from its start to its resolved promise. E2B_API_URL, E2B_SANDBOX_URL
// and E2B_API_KEY name the host.
//
// node sandboxes.mjs timings N    JSON: create (one a second), a burst of 10
//                                 at once; then, those killed but one:
//                                 commands.run('echo hi') in it, and its pause
//                                 and resume, idle with a shell and a sleeping
//                                 background process
// node sandboxes.mjs idle N       N running sandboxes, "ready", then on stdin's
//                                 end they are killed
// node sandboxes.mjs paused N     N paused sandboxes (each with a file and a
//                                 sleeping process), "ready", then killed
import { Sandbox } from 'e2b'

const [phase, arg] = process.argv.slice(2)
const n = Number(arg)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const now = () => performance.now()

async function timed(fn) {
  const t0 = now()
  const v = await fn()
  return [now() - t0, v]
}

async function timings() {
  const out = { create_ms: [], burst_ms: [], run_ms: [], pause_ms: [], resume_ms: [] }
  const made = []
  for (let i = 0; i < n; i++) {
    const [ms, sbx] = await timed(() => Sandbox.create())
    out.create_ms.push(ms)
    made.push(sbx)
    await sleep(1000)
  }
  const burst = await Promise.all(Array.from({ length: 10 }, () => timed(() => Sandbox.create())))
  for (const [ms, sbx] of burst) {
    out.burst_ms.push(ms)
    made.push(sbx)
  }
  // The rest alone: the burst's sandboxes go, the first stays.
  const sbx = made[0]
  await Promise.all(made.slice(1).map((s) => s.kill()))
  await sbx.commands.run('true') // the first command warms the SDK's connections
  for (let i = 0; i < Math.max(n, 20); i++) {
    const [ms, r] = await timed(() => sbx.commands.run('echo hi'))
    if (r.stdout !== 'hi\n') throw new Error('echo hi: ' + JSON.stringify(r))
    out.run_ms.push(ms)
  }
  // idle: a shell (a pty) and a sleeping background process
  await sbx.pty.create({ cols: 80, rows: 24, onData: () => {}, timeoutMs: 0 })
  await sbx.commands.run('sleep 100000', { background: true, timeoutMs: 0 })
  for (let i = 0; i < n; i++) {
    await sleep(200)
    const [p] = await timed(() => sbx.pause())
    const [r] = await timed(() => sbx.connect())
    out.pause_ms.push(p)
    out.resume_ms.push(r)
  }
  const procs = await sbx.commands.list()
  if (!procs.some((p) => p.args.join(' ').includes('sleep 100000'))) throw new Error('the background process is gone')
  await sbx.kill()
  console.log(JSON.stringify(out))
}

// hold makes N sandboxes (4 at a time), pausing each if asked, says ready,
// and kills them all when stdin ends.
async function hold(pause) {
  const ids = []
  let next = 0
  async function one() {
    while (next < n) {
      next++
      const sbx = await Sandbox.create({ timeoutMs: 3_600_000 })
      await sbx.commands.run('sleep 100000', { background: true, timeoutMs: 0 })
      if (pause) {
        await sbx.files.write('note.txt', 'kept')
        await sbx.pause()
      }
      ids.push(sbx.sandboxId)
    }
  }
  await Promise.all(Array.from({ length: 4 }, one))
  console.log('ready ' + ids.length)
  process.stdin.resume()
  await new Promise((r) => process.stdin.on('end', r))
  for (let i = 0; i < ids.length; i += 16) {
    await Promise.all(ids.slice(i, i + 16).map((id) => Sandbox.kill(id)))
  }
  console.log('killed ' + ids.length)
}

try {
  if (phase === 'timings') await timings()
  else if (phase === 'idle') await hold(false)
  else if (phase === 'paused') await hold(true)
  else throw new Error('phase: timings, idle or paused')
} catch (e) {
  console.error(e?.stack ?? String(e))
  process.exit(1)
}
