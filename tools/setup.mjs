#!/usr/bin/env node
// Installs what the project needs and is missing, and says what it does. Safe to run again (checks first).
//   node tools/setup.mjs            npm dependencies; a WebGPU adapter (lavapipe from bookworm-backports if none)
//   node tools/setup.mjs --demo     also espeak-ng and sox (the demo synthesizes speech)
//   node tools/setup.mjs --browser  also Debian's chromium (browser tests)
//   node tools/setup.mjs --torch    also python3-torch + libopenblas0-pthread (reference tools, bench peers)
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = new Set(process.argv.slice(2));
const log = (m) => console.log(`[setup] ${m}`);

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function sh(cmd, argv, env = {}) {
  log(`$ ${cmd} ${argv.join(' ')}`);
  execFileSync(cmd, argv, { stdio: 'inherit', cwd: root, env: { ...process.env, ...env } });
}

// 1. npm dependencies
function npmDeps() {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
  const deps = { ...pkg.dependencies, ...pkg.devDependencies };
  const missing = Object.keys(deps).filter((d) => !fs.existsSync(path.join(root, 'node_modules', d, 'package.json')));
  if (missing.length === 0) {
    log('npm dependencies: present');
    return;
  }
  log(`npm dependencies missing: ${missing.join(', ')}`);
  const lock = fs.existsSync(path.join(root, 'package-lock.json'));
  // onnxruntime-node's install script would download CUDA files; the bench only needs its bundled CPU/WebGPU build
  sh('npm', [lock ? 'ci' : 'install', '--no-audit', '--no-fund'], { ONNXRUNTIME_NODE_INSTALL: 'skip', ONNXRUNTIME_NODE_INSTALL_CUDA: 'skip' });
}

let aptUpdated = false;
function aptInstall(pkgs, extra = []) {
  if (process.platform !== 'linux' || !have('apt-get')) throw new Error(`cannot install ${pkgs.join(' ')}: not a Debian-like system; install them by hand`);
  if (process.getuid && process.getuid() !== 0) throw new Error(`installing ${pkgs.join(' ')} needs root (apt-get); run as root or install them by hand`);
  if (!aptUpdated) {
    sh('apt-get', ['update', '-qq']);
    aptUpdated = true;
  }
  sh('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...extra, ...pkgs], { DEBIAN_FRONTEND: 'noninteractive' });
}

function dpkgHas(pkg) {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.includes('install ok installed');
}

function probe() {
  const r = spawnSync(process.execPath, [path.join(root, 'tools/probe-adapter.mjs')], { encoding: 'utf8', cwd: root, timeout: 120000 });
  const line = (r.stdout || '').trim().split('\n').pop() || '';
  try {
    return JSON.parse(line);
  } catch {
    return { adapter: null, error: (r.stderr || '').slice(-2000) };
  }
}

// 2. a WebGPU adapter
function adapter() {
  let p = probe();
  if (p.adapter) {
    log(`WebGPU adapter: ${p.adapter.vendor} ${p.adapter.architecture} ${p.adapter.description}`.trim());
    return;
  }
  log('no WebGPU adapter found; installing the lavapipe software Vulkan driver (Mesa from bookworm-backports)');
  const os = fs.existsSync('/etc/os-release') ? fs.readFileSync('/etc/os-release', 'utf8') : '';
  if (!/VERSION_CODENAME=bookworm/.test(os)) {
    throw new Error('no WebGPU adapter, and this is not Debian bookworm: install a Vulkan driver (Mesa >= 24 lavapipe, or a GPU driver) by hand');
  }
  const src = '/etc/apt/sources.list.d/bookworm-backports.sources';
  const already = spawnSync('sh', ['-c', 'grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/'], { stdio: 'ignore' }).status === 0;
  if (!already) {
    log(`adding ${src}`);
    fs.writeFileSync(src, 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n');
    aptUpdated = false;
  }
  aptInstall(['mesa-vulkan-drivers', 'libvulkan1'], ['-t', 'bookworm-backports']);
  p = probe();
  if (!p.adapter) throw new Error(`still no WebGPU adapter after installing lavapipe. Dawn said:\n${p.error ?? ''}`);
  log(`WebGPU adapter: ${p.adapter.vendor} ${p.adapter.architecture} ${p.adapter.description}`.trim());
}

function debs(list, what) {
  const missing = list.filter((p) => !dpkgHas(p));
  if (missing.length === 0) {
    log(`${what}: present`);
    return;
  }
  log(`${what}: installing ${missing.join(' ')}`);
  aptInstall(missing);
}

try {
  npmDeps();
  adapter();
  if (args.has('--demo')) debs(['espeak-ng', 'sox'], 'demo tools (espeak-ng, sox)');
  if (args.has('--browser')) debs(['chromium'], 'browser (chromium)');
  if (args.has('--torch')) debs(['python3-torch', 'libopenblas0-pthread', 'python3-numpy'], 'PyTorch (reference tools and bench peer)');
  log('done');
} catch (e) {
  console.error(`[setup] FAILED: ${e.message}`);
  process.exit(1);
}
