// The bench's command line (bench/options.ts): paths, figures, rounds, variants with agent flags.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BASE_PATHS, FIGURES, HelpRequested, measures, parseBenchArgs, parseVariant, splitFlags } from '../../bench/options';

const Options = suite('bench/options: flags of npm run bench');

Options('defaults: every path in the fixed round order, every figure, 3 rounds of 5 s, 30 s floods', () => {
  const args = parseBenchArgs([]);
  assert.equal(args.paths.map((p) => p.name), ['kernel-vxlan', 'vxtun-vxlan', 'vxtun-ipip', 'mixed', 'vxtun-vxlan-plain', 'underlay']);
  assert.equal(args.paths.map((p) => p.name), [...BASE_PATHS]);
  assert.equal(args.figures, [...FIGURES]);
  assert.is(args.rounds, 3);
  assert.is(args.seconds, 5);
  assert.is(args.flood, 30);
  assert.is(args.only, undefined);
  assert.is(args.figuresGiven, false);
});

Options("the brief's before/after command: paths keep the fixed order whatever order they are given in", () => {
  const args = parseBenchArgs(['--only', 'e2e', '--paths', 'vxtun-vxlan,kernel-vxlan', '--figures', 'tcp1,udp64,ping', '--rounds', '4']);
  assert.is(args.only, 'e2e');
  assert.equal(args.paths.map((p) => p.name), ['kernel-vxlan', 'vxtun-vxlan']);
  assert.equal(args.figures, ['tcp1', 'udp64', 'ping']);
  assert.is(args.rounds, 4);
  assert.is(args.figuresGiven, true);
});

Options('--runs is kept as the old name of --rounds', () => {
  assert.is(parseBenchArgs(['--runs', '2']).rounds, 2);
});

Options('a variant adds vxtun-vxlan+NAME right after its base, with its flags split as a shell would', () => {
  const args = parseBenchArgs(['--paths', 'kernel-vxlan,vxtun-vxlan,vxtun-ipip', '--variant', 'uring=--tun-io uring', '--variant', 'vxtun-ipip+spin=--busy-poll "50 us"']);
  assert.equal(args.paths.map((p) => p.name), ['kernel-vxlan', 'vxtun-vxlan', 'vxtun-vxlan+uring', 'vxtun-ipip', 'vxtun-ipip+spin']);
  assert.equal(args.paths[2], { name: 'vxtun-vxlan+uring', base: 'vxtun-vxlan', agentArgs: ['--tun-io', 'uring'] });
  assert.equal(args.paths[4]!.agentArgs, ['--busy-poll', '50 us']);
});

Options('splitFlags: quotes group words, empty quotes are a word, an open quote is an error', () => {
  assert.equal(splitFlags('  --a 1   --b "x y" \'z\' '), ['--a', '1', '--b', 'x y', 'z']);
  assert.equal(splitFlags('--name ""'), ['--name', '']);
  assert.equal(splitFlags(''), []);
  assert.throws(() => splitFlags('--a "b'), /unterminated/);
});

Options('bad variants are refused with the reason', () => {
  assert.throws(() => parseVariant('uring'), /NAME=FLAGS/);
  assert.throws(() => parseVariant('kernel-vxlan+x=--y'), /runs no vxtun agent/);
  assert.throws(() => parseVariant('Bad_Name=--y'), /must be 1-24/);
  assert.throws(() => parseVariant('x='), /no agent flags/);
  assert.throws(() => parseBenchArgs(['--variant', 'a=--x', '--variant', 'a=--y']), /given twice/);
});

Options('bad values are refused with commander\'s message and the usage', () => {
  assert.throws(() => parseBenchArgs(['--paths', 'kernel-vxlan,warp']), /unknown path "warp"/);
  assert.throws(() => parseBenchArgs(['--figures', 'tcp9']), /unknown figure "tcp9"/);
  assert.throws(() => parseBenchArgs(['--rounds', '0']), /--rounds must be an integer 1-50/);
  assert.throws(() => parseBenchArgs(['--rounds', '2.5']), /--rounds/);
  assert.throws(() => parseBenchArgs(['--only', 'all']), /must be one of/);
  assert.throws(() => parseBenchArgs(['--frobnicate']), /unknown option/);
  assert.throws(() => parseBenchArgs(['stray']), /too many arguments|unexpected/i);
});

Options('--help is not an error: the caller prints the usage', () => {
  try {
    parseBenchArgs(['--help']);
    assert.unreachable('no HelpRequested');
  } catch (error) {
    assert.instance(error, HelpRequested);
    assert.match((error as HelpRequested).text, /--variant <name=flags>/);
  }
});

Options('tcp1r runs by default only where the two ends differ (mixed and its variants), everywhere when asked for', () => {
  const byDefault = parseBenchArgs(['--variant', 'mixed+u=--x']);
  const ran = byDefault.paths.filter((p) => measures(byDefault, p, 'tcp1r')).map((p) => p.name);
  assert.equal(ran, ['mixed', 'mixed+u']);
  assert.ok(measures(byDefault, byDefault.paths[0]!, 'tcp1'));
  const asked = parseBenchArgs(['--figures', 'tcp1r']);
  assert.is(asked.paths.filter((p) => measures(asked, p, 'tcp1r')).length, BASE_PATHS.length);
  assert.not.ok(measures(asked, asked.paths[0]!, 'tcp1'));
});

Options.run();
