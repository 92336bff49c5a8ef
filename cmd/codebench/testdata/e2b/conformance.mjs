// The E2B SDK's conformance against codebench sandboxes: the unmodified npm
// package (pinned in internal/e2bsdk/package.json), run by
// cmd/codebench/sandboxes_test.go with E2B_API_URL, E2B_SANDBOX_URL and
// E2B_API_KEY set. Each check prints "ok <name>"; the first failure prints "FAIL <name>: <why>" and exits 1.
//
// node conformance.mjs main STATE_FILE     everything; leaves one sandbox paused
//                                          (a file, a background process) and
//                                          one running, their ids in STATE_FILE
// node conformance.mjs restarted STATE_FILE after a kill -9 of the host and a
//                                          start: the paused one resumes whole,
//                                          the running one is gone
import { Sandbox, CommandExitError, FileNotFoundError, NotFoundError, SandboxNotFoundError,
  AuthenticationError, RateLimitError } from 'e2b'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'

const [phase, stateFile] = process.argv.slice(2)
const apiUrl = process.env.E2B_API_URL
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

let current = 'start'
async function check(name, fn) {
  current = name
  await fn()
  console.log('ok ' + name)
}
function assert(cond, why) {
  if (!cond) throw new Error(why)
}
function eq(got, want, what) {
  assert(JSON.stringify(got) === JSON.stringify(want), `${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`)
}
async function rejects(p, cls, what) {
  try {
    await p
  } catch (e) {
    assert(e instanceof cls, `${what}: threw ${e?.constructor?.name}: ${e?.message}, want ${cls.name}`)
    return e
  }
  throw new Error(`${what}: did not throw (want ${cls.name})`)
}
async function until(what, fn, ms = 10000) {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await fn()) return
    await sleep(50)
  }
  throw new Error('timed out waiting for ' + what)
}

async function main() {
  const suite = randomBytes(6).toString('hex')
  let a, b
  await check('create two sandboxes', async () => {
    a = await Sandbox.create({ metadata: { suite, n: 'a' }, envs: { A: 'from-create' }, timeoutMs: 600_000 })
    b = await Sandbox.create({ metadata: { suite, n: 'b' } })
    assert(a.sandboxId !== b.sandboxId, 'two sandboxes, one id')
    assert(await a.isRunning() && await b.isRunning(), 'not running')
  })

  await check('commands: run, the user, its home', async () => {
    const r = await a.commands.run('echo hi; whoami; pwd')
    eq(r.stdout, 'hi\nuser\n/home/user\n', 'stdout')
    eq(r.exitCode, 0, 'exit code')
  })

  await check('commands: stdout and stderr streamed before the exit', async () => {
    // The command waits for a line on stdin, which is sent only once both
    // streams' first lines have arrived: they came before the exit.
    let out = ''
    let err = ''
    const h = await a.commands.run('echo one; echo two >&2; read go; echo three', {
      background: true, stdin: true, onStdout: (d) => { out += d }, onStderr: (d) => { err += d },
    })
    await until('both streams before the exit', () => out === 'one\n' && err === 'two\n')
    await a.commands.sendStdin(h.pid, 'go\n')
    const r = await h.wait()
    eq([r.exitCode, r.stdout, r.stderr], [0, 'one\nthree\n', 'two\n'], 'the result')
  })

  await check('commands: a non-zero exit', async () => {
    const e = await rejects(a.commands.run('echo bad >&2; exit 3'), CommandExitError, 'exit 3')
    eq(e.exitCode, 3, 'exit code')
    eq(e.stderr, 'bad\n', 'stderr')
  })

  await check('commands: envs (the sandbox\'s and the command\'s) and cwd', async () => {
    const r = await a.commands.run('echo "$A $B"; pwd', { envs: { B: 'from-run' }, cwd: '/tmp' })
    eq(r.stdout, 'from-create from-run\n/tmp\n', 'stdout')
  })

  await check('commands: 1 MB of output', async () => {
    const r = await a.commands.run("head -c 1000000 /dev/zero | tr '\\0' x")
    eq(r.stdout.length, 1000000, 'bytes')
    assert(/^x+$/.test(r.stdout), 'content')
  })

  let catPid
  await check('commands: a background command fed with sendStdin, list, kill', async () => {
    let out = ''
    const h = await a.commands.run('cat', { background: true, stdin: true, timeoutMs: 0, onStdout: (d) => { out += d } })
    catPid = h.pid
    await a.commands.sendStdin(h.pid, 'ping\n')
    await until('the echo of stdin', () => out === 'ping\n')
    const list = await a.commands.list()
    assert(list.some((p) => p.pid === h.pid && p.args.join(' ').includes('cat')), 'not listed: ' + JSON.stringify(list))
    eq(await a.commands.kill(h.pid), true, 'kill')
    await until('the killed command to leave the list', async () => !(await a.commands.list()).some((p) => p.pid === h.pid))
    eq(await a.commands.kill(h.pid), false, 'kill of a gone pid')
  })

  await check('files: text and bytes', async () => {
    await a.files.write('notes/hello.txt', 'hello world')
    eq(await a.files.read('notes/hello.txt'), 'hello world', 'text')
    const bytes = new Uint8Array([0, 1, 2, 250, 255])
    await a.files.write('/home/user/bytes.bin', bytes)
    const got = await a.files.read('bytes.bin', { format: 'bytes' })
    eq(Array.from(got), Array.from(bytes), 'bytes')
  })

  await check('files: a 3 MiB binary, its hash checked inside the sandbox', async () => {
    const blob = randomBytes(3 << 20)
    const want = createHash('sha256').update(blob).digest('hex')
    await a.files.write('big.bin', blob)
    const r = await a.commands.run('sha256sum big.bin')
    eq(r.stdout.split(' ')[0], want, 'sha256')
    const back = await a.files.read('big.bin', { format: 'bytes' })
    eq(createHash('sha256').update(back).digest('hex'), want, 'sha256 read back')
  })

  await check('files: makeDir, list with depth, rename, remove, several files in one write, exists, a missing file', async () => {
    eq(await a.files.makeDir('tree/sub'), true, 'makeDir')
    eq(await a.files.makeDir('tree/sub'), false, 'makeDir of an existing dir')
    await a.files.write([
      { path: 'tree/one.txt', data: '1' },
      { path: '/home/user/tree/sub/two.txt', data: '2' },
    ])
    const shallow = (await a.files.list('tree')).map((e) => e.name + ':' + e.type).sort()
    eq(shallow, ['one.txt:file', 'sub:dir'], 'depth 1')
    const deep = (await a.files.list('tree', { depth: 2 })).map((e) => e.path).sort()
    eq(deep, ['/home/user/tree/one.txt', '/home/user/tree/sub', '/home/user/tree/sub/two.txt'], 'depth 2')
    const moved = await a.files.rename('tree/one.txt', 'tree/uno.txt')
    eq(moved.path, '/home/user/tree/uno.txt', 'rename')
    eq(await a.files.exists('tree/uno.txt'), true, 'exists')
    eq(await a.files.exists('tree/one.txt'), false, 'exists after rename')
    await a.files.remove('tree/sub')
    eq(await a.files.exists('tree/sub/two.txt'), false, 'removed')
    await rejects(a.files.read('no/such/file'), FileNotFoundError, 'a missing file')
  })

  await check('presigned URLs: a download and an upload with plain fetch, a changed URL refused', async () => {
    const dl = await a.downloadUrl('notes/hello.txt')
    const got = await fetch(dl)
    eq([got.status, await got.text()], [200, 'hello world'], 'download')
    const ul = await a.uploadUrl('uploaded.txt', { useSignatureExpiration: 60 })
    const form = new FormData()
    form.append('file', new Blob(['via a URL']), 'uploaded.txt')
    eq((await fetch(ul, { method: 'POST', body: form })).status, 200, 'upload')
    eq(await a.files.read('uploaded.txt'), 'via a URL', 'uploaded')
    eq((await fetch(dl.replace('hello.txt', 'other.txt'))).status, 401, 'a changed URL')
  })

  await check('pty', async () => {
    let out = ''
    const dec = new TextDecoder()
    const h = await a.pty.create({ cols: 80, rows: 24, onData: (d) => { out += dec.decode(d) }, timeoutMs: 0 })
    await a.pty.sendInput(h.pid, new TextEncoder().encode('echo pty-$((6*7)); tty\n'))
    await until('the pty to echo', () => out.includes('pty-42') && out.includes('/dev/pts/'))
    await a.pty.resize(h.pid, { cols: 100, rows: 30 })
    await a.pty.sendInput(h.pid, new TextEncoder().encode('stty size\n'))
    await until('the new size', () => out.includes('30 100'))
    eq(await a.pty.kill(h.pid), true, 'kill')
  })

  await check('watchDir', async () => {
    const events = []
    await a.files.makeDir('watched')
    const w = await a.files.watchDir('watched', (e) => events.push(e.name + ':' + e.type))
    await a.files.write('watched/new.txt', 'x')
    await until('a write event', () => events.some((e) => e.startsWith('new.txt:')))
    await w.stop()
  })

  await check('isolation between the two sandboxes', async () => {
    const marker = await a.commands.run('sleep 999', { background: true, timeoutMs: 0 })
    await a.files.write('secret.txt', 'a only')
    eq(await b.files.exists('secret.txt'), false, "b sees a's file")
    const r = await b.commands.run("ls /home/user; cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
    assert(!r.stdout.includes('secret.txt') && !r.stdout.includes('sleep 999'), "b sees a's things: " + r.stdout)
    eq(await a.commands.kill(marker.pid), true, 'kill the marker')
    // a's token on b's id: refused
    const res = await fetch(apiUrl + '/files?path=secret.txt', {
      headers: { 'E2b-Sandbox-Id': b.sandboxId, 'E2b-Sandbox-Port': '49983', 'X-Access-Token': 'wrong-' + b.sandboxId },
    })
    eq(res.status, 401, 'a wrong access token')
  })

  await check('getMetrics: one reading, as the host charges it', async () => {
    const m = await b.getMetrics()
    eq(m.length, 1, 'readings')
    assert(m[0].cpuCount >= 1 && m[0].memUsed > 0 && m[0].memTotal > 0 && m[0].cpuUsedPct >= 0, JSON.stringify(m))
    assert(m[0].timestamp instanceof Date && !isNaN(m[0].timestamp), 'timestamp ' + m[0].timestamp)
  })

  await check('setTimeout', async () => {
    await b.setTimeout(120_000)
    const info = await b.getInfo()
    const left = info.endAt.getTime() - Date.now()
    assert(left > 100_000 && left <= 121_000, 'endAt in ' + left + ' ms')
  })

  await check('list by metadata across pages', async () => {
    const p = Sandbox.list({ query: { metadata: { suite } }, limit: 1 })
    const ids = []
    while (p.hasNext) {
      const items = await p.nextItems()
      assert(items.length <= 1, 'a page of ' + items.length)
      ids.push(...items.map((s) => s.sandboxId))
    }
    eq(ids.sort(), [a.sandboxId, b.sandboxId].sort(), 'listed')
    const onlyA = await Sandbox.list({ query: { metadata: { suite, n: 'a' } } }).nextItems()
    eq(onlyA.map((s) => s.sandboxId), [a.sandboxId], 'by two keys')
  })

  let sleeper
  await check('pause, pause again, list as paused, connect: files and a background process survive; the old handle works', async () => {
    sleeper = await a.commands.run('sleep 1000', { background: true, timeoutMs: 0 })
    eq(await a.pause(), true, 'pause')
    eq(await a.pause(), false, 'pause again')
    eq(await a.isRunning(), false, 'running while paused')
    const paused = await Sandbox.list({ query: { metadata: { suite }, state: ['paused'] } }).nextItems()
    eq(paused.map((s) => s.sandboxId + ':' + s.state), [a.sandboxId + ':paused'], 'paused list')
    const again = await Sandbox.connect(a.sandboxId)
    eq(await again.files.read('notes/hello.txt'), 'hello world', 'file after resume')
    assert((await again.commands.list()).some((p) => p.pid === sleeper.pid), 'the background process is gone')
    eq((await a.commands.run('echo old-handle')).stdout, 'old-handle\n', 'the old handle')
  })

  await check('10 pause and resume cycles keep every file and the process', async () => {
    for (let i = 0; i < 10; i++) {
      await a.files.write(`cycle/${i}.txt`, String(i))
      await a.pause()
      await a.connect()
      const r = await a.commands.run('cat cycle/*.txt')
      eq(r.stdout, Array.from({ length: i + 1 }, (_, j) => j).join(''), 'files after cycle ' + i)
      assert((await a.commands.list()).some((p) => p.pid === sleeper.pid), 'the process is gone after cycle ' + i)
    }
  })

  await check('limits: a third running sandbox for this key is refused (429)', async () => {
    await rejects(Sandbox.create(), RateLimitError, 'a third sandbox')
  })

  await check('kill', async () => {
    eq(await b.kill(), true, 'kill')
    eq(await b.kill(), false, 'kill again')
    eq(await b.isRunning(), false, 'running after kill')
    await rejects(Sandbox.connect(b.sandboxId), SandboxNotFoundError, 'connect to a killed sandbox')
  })

  await check('lifecycle onTimeout pause: the timeout pauses it, connect resumes it', async () => {
    const s = await Sandbox.create({ timeoutMs: 2000, lifecycle: { onTimeout: 'pause' } })
    await s.files.write('kept.txt', 'yes')
    await until('the timeout to pause it', async () => (await s.getInfo()).state === 'paused', 15000)
    const again = await Sandbox.connect(s.sandboxId)
    eq(await again.files.read('kept.txt'), 'yes', 'file')
    eq(await again.kill(), true, 'kill')
  })

  await check('wrong API key and another key refused', async () => {
    await rejects(Sandbox.list({ apiKey: 'wrong-key' }).nextItems(), AuthenticationError, 'a wrong key')
    await rejects(Sandbox.connect(a.sandboxId, { apiKey: process.env.E2B_OTHER_API_KEY }), NotFoundError, "another key's sandbox")
  })

  // For the restart: a paused one, with a file and a process, and a running one.
  let c
  await check('leave one paused and one running for the restart', async () => {
    await a.files.write('before-restart.txt', 'kept')
    eq(await a.pause(), true, 'pause')
    c = await Sandbox.create({ metadata: { suite, n: 'c' } })
  })
  writeFileSync(stateFile, JSON.stringify({ paused: a.sandboxId, sleeper: sleeper.pid, running: c.sandboxId }))
}

async function restarted() {
  const st = JSON.parse(readFileSync(stateFile, 'utf8'))
  await check('after a kill -9 and a start: the paused sandbox resumes whole', async () => {
    const a = await Sandbox.connect(st.paused)
    eq(await a.files.read('before-restart.txt'), 'kept', 'file')
    assert((await a.commands.list()).some((p) => p.pid === st.sleeper), 'the background process is gone')
    eq(await a.kill(), true, 'kill')
  })
  await check('after a kill -9 and a start: the running one is gone', async () => {
    await rejects(Sandbox.connect(st.running), SandboxNotFoundError, 'the running one')
  })
}

try {
  if (phase === 'main') await main()
  else if (phase === 'restarted') await restarted()
  else throw new Error('phase: main or restarted')
} catch (e) {
  console.log(`FAIL ${current}: ${e?.stack ?? e}`)
  process.exit(1)
}
