import * as tf from '@tensorflow/tfjs';
import { copy } from '../../cpu-host.js';
import { checkPositions, fillPadding, windowAfter } from '../../layers/decode-state.js';
import { MixerLayer, mixerClassName, registerMixerLayer, type Initializer, type MixerLayerArgs } from '../../layers/mixer-layer.js';
import type { PrefillOptions } from '../../layers/prefill.js';
import {
  argumentError, checkPositiveInteger, checkShape, checkStepToken, checkTensor, optionNames, useKernel, type Implementation,
} from '../../validate.js';
import { denseGroups } from '../../dense/groups.js';
import { convolved, convolvedProjection } from './conv.js';
import { channelTable, scanKernel, selectiveScanStep, selectiveScanWithState, stepKernel } from './op.js';
import { tableFromWeights } from './kernel.js';
import { softplus } from './reference.js';

/** Arguments of the {@link SelectiveSSM} layer (Mamba's names in parentheses). */
export interface SelectiveSSMArgs extends MixerLayerArgs {
  /** The inner width E = expand·D of the block (`expand`), a positive integer. Default `2`. */
  expand?: number;
  /** The state size N per channel (`d_state`), a positive integer. Default `16`. */
  stateSize?: number;
  /** The rank R of the step-size projection (`dt_rank`), a positive integer. Default `ceil(D / 16)`. */
  dtRank?: number;
  /** The width dConv of the causal depthwise convolution (`d_conv`), a positive integer. Default `4`. */
  convKernel?: number;
  /** The smallest initial step size Δ, a number > 0. Default `1e-3`. */
  dtMin?: number;
  /** The largest initial step size Δ, a number ≥ `dtMin`. Default `1e-1`. */
  dtMax?: number;
  /** Initial step sizes are clamped to at least this, a number ≥ 0. Default `1e-4`. */
  dtInitFloor?: number;
}

/** The keys under which the layer keeps the scan kernels' per-channel table, and the x projection's column blocks. */
const CHANNELS = 'channels';
const X_LOW = 'xProj: the low-rank Δ\'s columns';
const X_BC = 'xProj: B\'s and C\'s columns';

const OPTIONS = optionNames<Omit<SelectiveSSMArgs, keyof MixerLayerArgs>>({
  expand: true, stateSize: true, dtRank: true, convKernel: true, dtMin: true, dtMax: true, dtInitFloor: true,
});

/** Decode state of {@link SelectiveSSM}: a fixed size, whatever the tokens seen. */
export type SelectiveSSMState = {
  /** `[B, dConv − 1, E]`: the convolution's window, each row's last dConv − 1 inner tokens (zeros before the first). */
  conv: tf.Tensor3D;
  /** `[B, E, N]`: the selective scan's state. */
  ssm: tf.Tensor3D;
  /** int32 `[B]`: the tokens each row has consumed. */
  positions: tf.Tensor1D;
};

function finiteAtLeast(layer: string, name: string, value: unknown, min: number, strict: boolean): number {
  const ok = typeof value === 'number' && Number.isFinite(value) && (strict ? value > min : value >= min);
  if (!ok) {
    throw argumentError(layer, `argument '${name}' must be a finite number ${strict ? '>' : '≥'} ${min}; received ${String(value)}.`);
  }
  return value as number;
}

/**
 * Mamba's initial `deltaBias [E]`: Δ = exp(U[log dtMin, log dtMax]), at least `floor`, then its
 * inverse softplus Δ + log(−expm1(−Δ)), so that softplus(deltaBias) = Δ at the start.
 */
function initialDeltaBias(E: number, dtMin: number, dtMax: number, floor: number): Float32Array {
  const out = new Float32Array(E);
  const [lo, hi] = [Math.log(dtMin), Math.log(dtMax)];
  for (let e = 0; e < E; e++) {
    const dt = Math.max(Math.exp(lo + Math.random() * (hi - lo)), floor);
    out[e] = dt + Math.log(-Math.expm1(-dt));
  }
  return out;
}

/**
 * The Mamba block (Gu & Dao 2023; the {@link "selective-ssm" | SelectiveSSM guide}), a causal sequence mixer in place of
 * self-attention: `[B, T, D] → [B, T, D]`, with E = expand·D, N = stateSize, R = dtRank:
 * ```
 * [x, z]      = x·inProj                          [B, T, E] each
 * x           = silu(causalDepthwiseConv(x))      dConv taps per channel, with a bias
 * [δ, Bt, Ct] = x·xProj                           [B, T, R], [B, T, N], [B, T, N]
 * y           = selectiveScan(x, δ·dtProj, −exp(ALog), Bt, Ct, {D, z, deltaBias})
 * out         = y·outProj
 * ```
 * The scan is `ops.selectiveScan` (WGSL kernels on WebGPU), O(T·E·N); the convolution is a
 * left zero-padding and tfjs's `depthwiseConv2d`, or on wasm (which has no gradient for that) a
 * sum of dConv shifted slices, so it has gradients on every backend.
 *
 * Weights and their initialisation, as Mamba's unless said:
 * - `inProj [D, 2E]`, `xProj [E, R + 2N]`, `outProj [E, D]`: no bias, glorotUniform (tfjs's
 *   Dense default, where Mamba keeps PyTorch's Linear default U(±fan_in^−1/2));
 * - `convKernel [dConv, E]`, `convBias [E]`: U(±dConv^−1/2), PyTorch's Conv1d default;
 * - `dtProj [R, E]`: U(±R^−1/2); `deltaBias [E]`: the inverse softplus of
 *   Δ = exp(U[log dtMin, log dtMax]) clamped ≥ dtInitFloor;
 * - `ALog [E, N]`: log(n) for n = 1..N in every channel (S4D-real), A = −exp(ALog);
 * - `D [E]`: ones, the skip connection.
 *
 * Decoding keeps a fixed-size state (the convolution's last dConv − 1 inner tokens and the
 * scan's `[B, E, N]` state), so each `step` costs O(D·E + E·N), whatever the position;
 * `prefill` runs a prompt through the parallel scan and returns the same state.
 *
 * @example
 * ```ts
 * const model = tf.sequential({ layers: [
 *   tf.layers.embedding({ inputDim: 65, outputDim: 64 }),
 *   layers.selectiveSSM({ stateSize: 16 }),
 *   tf.layers.dense({ units: 65 }),
 * ]});
 * model.predict(tf.tensor2d([[1, 2, 3]])); // [1, 3, 65]
 *
 * const mixer = model.layers[1] as SelectiveSSM;
 * let state = mixer.initState(1);
 * const [y, next] = mixer.step(tf.randomNormal([1, 64]), state); // y [1, 64]
 * tf.dispose(state);
 * state = next;
 * ```
 */
export class SelectiveSSM extends MixerLayer<{ E: number; N: number; R: number }> {
  /** The name tfjs saves the layer under. */
  static className = mixerClassName('SelectiveSSM');
  readonly expand: number;
  readonly stateSize: number;
  /** R as given; `null` for the default ceil(D / 16), resolved when the layer is built. */
  readonly dtRank: number | null;
  readonly convKernel: number;
  readonly dtMin: number;
  readonly dtMax: number;
  readonly dtInitFloor: number;

  constructor(args?: SelectiveSSMArgs) {
    super(args, OPTIONS);
    const name = this.layerName;
    this.expand = checkPositiveInteger(name, 'expand', args?.expand ?? 2);
    this.stateSize = checkPositiveInteger(name, 'stateSize', args?.stateSize ?? 16);
    this.dtRank = args?.dtRank == null ? null : checkPositiveInteger(name, 'dtRank', args.dtRank);
    this.convKernel = checkPositiveInteger(name, 'convKernel', args?.convKernel ?? 4);
    this.dtMin = finiteAtLeast(name, 'dtMin', args?.dtMin ?? 1e-3, 0, true);
    this.dtMax = finiteAtLeast(name, 'dtMax', args?.dtMax ?? 1e-1, this.dtMin, false);
    this.dtInitFloor = finiteAtLeast(name, 'dtInitFloor', args?.dtInitFloor ?? 1e-4, 0, false);
  }

  protected createWeights(D: number): void {
    const E = this.expand * D;
    const N = this.stateSize;
    const R = this.dtRank ?? Math.ceil(D / 16);
    const K = this.convKernel;
    const add = (n: string, shape: number[], init: Initializer) => this.addNamedWeight(n, shape, init);
    const uniform = (limit: number) => tf.initializers.randomUniform({ minval: -limit, maxval: limit });
    add('inProj', [D, 2 * E], tf.initializers.glorotUniform({}));
    add('convKernel', [K, E], uniform(1 / Math.sqrt(K)));
    add('convBias', [E], uniform(1 / Math.sqrt(K)));
    add('xProj', [E, R + 2 * N], tf.initializers.glorotUniform({}));
    add('dtProj', [R, E], uniform(1 / Math.sqrt(R)));
    add('deltaBias', [E], tf.initializers.zeros());
    add('ALog', [E, N], tf.initializers.zeros());
    add('D', [E], tf.initializers.ones());
    add('outProj', [E, D], tf.initializers.glorotUniform({}));
    // the initial values no tfjs initializer draws
    tf.tidy(() => {
      this.weight('deltaBias').write(tf.tensor1d(initialDeltaBias(E, this.dtMin, this.dtMax, this.dtInitFloor)));
      this.weight('ALog').write(tf.tile(tf.log(tf.range(1, N + 1)).reshape([1, N]), [E, 1]));
    });
    this.setDims({ E, N, R });
    // the scan kernels' table of each channel's A = −exp(ALog), D and Δ bias, which a step (and a
    // forward where no gradient is recorded) would otherwise form from the weights in a launch
    this.keepFromWeights(CHANNELS, ['ALog', 'D', 'deltaBias'], () => this.table());
    // the x projection's column blocks (E·(R + 2N) floats, small beside the weights), for the
    // grouped product of a forward where no gradient is recorded. inProj's would copy the
    // layer's largest weight: the kernels read its halves where they lie instead
    this.keepFromWeights(X_LOW, ['xProj'], () => copy.slice(this.weight('xProj').read(), [0, 0], [-1, R]));
    this.keepFromWeights(X_BC, ['xProj'], () => copy.slice(this.weight('xProj').read(), [0, R], [-1, 2 * N]));
  }

  /** From the convolved inner tokens `[..., E]` to the scan's delta `[..., E]`, B and C `[..., N]`. */
  private scanInputs(x: tf.Tensor): { delta: tf.Tensor; B: tf.Tensor; C: tf.Tensor } {
    const { N, R } = this.dims();
    const [low, B, C] = copy.split(this.dense(x, 'xProj'), [R, N, N], -1);
    return { delta: this.dense(low!, 'dtProj'), B: B!, C: C! };
  }

  /**
   * Δ `[..., E]` and B|C `[..., 2N]` of the convolved inner tokens u `[..., E]` for the scan
   * kernels, from the x projection's kept column blocks: one grouped launch for the low-rank Δ
   * and B|C side by side (as the kernels read them), then Δ's own, where a product, three slices
   * and a concat took five. Where no gradient is recorded, over T tokens: forming Δ in the scan's
   * passes instead (`lowRank`, as a step does) took SwiftShader 20–40 % longer in each pass.
   */
  private keptScanInputs(u: tf.Tensor): { delta: tf.Tensor; bc: tf.Tensor } {
    const blocks = [X_LOW, X_BC].map((key) => this.kept(key) as tf.Tensor2D);
    const [low, bc] = denseGroups(u, blocks, undefined, this.activeImplementation());
    return { delta: this.dense(low!, 'dtProj'), bc: bc! };
  }

  /**
   * What a decode step's scan kernel reads of the convolved inner token u `[B, E]`: the x
   * projection's output `[B, R + 2N]` = low | B | C as it lies, with dtProj, from which it forms
   * Δ = low·dtProj itself (`lowRank`), where slicing B and C out and forming Δ took three
   * launches more.
   */
  private lowRankInputs(u: tf.Tensor): { dtProj: tf.Tensor2D; projected: tf.Tensor } {
    return { dtProj: this.weight('dtProj').read() as tf.Tensor2D, projected: this.dense(u, 'xProj') };
  }

  protected forward(x: tf.Tensor3D): tf.Tensor3D {
    const implementation = this.activeImplementation();
    if (x.size === 0 || !useKernel(this.layerName, implementation)) return this.block(x).y;
    if (tf.engine().state.gradientDepth > 0) return this.tapedForward(x, implementation);
    const { y, ssm } = this.untapedBlock(x);
    ssm.dispose();
    return y;
  }

  /** Whether x `[B, T, D]` runs {@link untapedBlock}: on the kernels, with tokens, where no gradient is recorded. */
  private runsUntaped(x: tf.Tensor3D): boolean {
    return x.size > 0 && this.untapedKernels();
  }

  /**
   * The block on the kernels where no gradient is recorded, from `start`'s window and scan state
   * (zeros without it): the convolution and the scan read x and z where they lie in the in
   * projection [B, T, 2E], and the scan's table and B|C are the layer's kept ones, 8 launches
   * where the block takes 17. With `start` (a prefill) it also returns the window after x: of
   * whole rows written by the convolution's launch, of rows padded past `start.lengths` one
   * launch of its own; at a padded step Δ's pre-activation is −10³⁰ (one launch), whose softplus
   * is exactly 0, so the scan leaves the state as it is there.
   */
  private untapedBlock(x: tf.Tensor3D, start?: { conv: tf.Tensor3D; ssm: tf.Tensor3D; lengths?: tf.Tensor1D }):
    { y: tf.Tensor3D; conv?: tf.Tensor3D; ssm: tf.Tensor3D } {
    const projected = this.dense(x, 'inProj') as tf.Tensor3D;
    const lengths = start?.lengths;
    const { u, next } = this.convolve(projected, this.activeImplementation(), start?.conv, start !== undefined && !lengths);
    const { delta, bc } = this.keptScanInputs(u);
    const kept = lengths ? fillPadding(delta as tf.Tensor3D, lengths, { fill: -1e30, onKernel: true }) : delta as tf.Tensor3D;
    const { output, state } = scanKernel(u, kept, this.kept(CHANNELS) as tf.Tensor2D, bc as tf.Tensor3D,
      { z: projected, zInProjection: true, deltaSoftplus: true, ...(start ? { initialState: start.ssm } : {}) });
    // the window reads the inner tokens where they lie, the in projection's first half
    const conv = start && lengths ? windowAfter(start.conv, projected, lengths, true) : next;
    return { y: this.dense(output, 'outProj') as tf.Tensor3D, conv, ssm: state };
  }

  /**
   * The forward on the kernels under a gradient tape: the block's ops, but the convolution reads
   * x in the in projection and hands z on ({@link convolvedProjection}), B|C is one slice of the
   * x projection's output and the scan's table is formed here, both handed to the scan kernels
   * as they read them, where `ops.selectiveScan` would take B and C apart and pack them again and
   * form the table in three: 11 launches, the block's 17.
   */
  private tapedForward(x: tf.Tensor3D, implementation: Implementation): tf.Tensor3D {
    const { N, R } = this.dims();
    const { u, z } = convolvedProjection(this.dense(x, 'inProj') as tf.Tensor3D, this.weight('convKernel').read() as tf.Tensor2D,
      this.weight('convBias').read() as tf.Tensor1D, implementation);
    const [low, bc] = copy.split(this.dense(u, 'xProj'), [R, 2 * N], -1);
    const { output, state } = scanKernel(u, this.dense(low!, 'dtProj') as tf.Tensor3D, this.table(), bc as tf.Tensor3D, { z, deltaSoftplus: true });
    state.dispose();
    return this.dense(output, 'outProj') as tf.Tensor3D;
  }

  /**
   * The block on x `[B, T, D]`. Without `start`, the forward: zeros before the first token.
   * With it (a prefill), the convolution's window before x is `start.conv` and the scan starts
   * from `start.ssm`; Δ is 0 at the padded steps (t ≥ `lengths[b]`, if given), and exp(0·A) = 1 with
   * an input Δ·u = 0 leaves the scan's state as it is there, so the final state is each row's
   * after its real tokens. Returns the output, the inner tokens and that final state.
   */
  private block(x: tf.Tensor3D, start?: { conv: tf.Tensor3D; ssm: tf.Tensor3D; lengths?: tf.Tensor1D }):
    { y: tf.Tensor3D; inner: tf.Tensor3D; ssm?: tf.Tensor3D } {
    const [inner, z] = copy.split(this.dense(x, 'inProj'), 2, -1) as [tf.Tensor3D, tf.Tensor3D];
    // causal depthwise conv after the window before x (zeros in the forward), then silu
    const implementation = this.activeImplementation();
    const { u } = this.convolve(inner, implementation, start?.conv);
    const { delta, B, C } = this.scanInputs(u);
    const skip = this.weight('D').read() as tf.Tensor1D;
    const deltaBias = this.weight('deltaBias').read() as tf.Tensor1D;
    // at a padded step Δ is 0, so it is formed and masked here; otherwise the scan forms it
    const masked = start?.lengths ? fillPadding(softplus(tf.add(delta, deltaBias)) as tf.Tensor3D, start.lengths) : undefined;
    const scanned = selectiveScanWithState(u, masked ?? delta as tf.Tensor3D, this.stateMatrix(), B as tf.Tensor3D, C as tf.Tensor3D, {
      D: skip, z, ...(masked ? { deltaSoftplus: false } : { deltaBias, deltaSoftplus: true }),
      ...(start ? { initialState: start.ssm } : {}), implementation,
    });
    const y = this.dense(scanned.output, 'outProj') as tf.Tensor3D;
    if (start) return { y, inner, ssm: scanned.state };
    scanned.state.dispose();
    return { y, inner };
  }

  /** {@link convolved} with the layer's taps and bias. */
  private convolve(inner: tf.Tensor3D, implementation: Implementation, window?: tf.Tensor3D, next = false, positions?: tf.Tensor1D) {
    return convolved(inner, this.weight('convKernel').read() as tf.Tensor2D, this.weight('convBias').read() as tf.Tensor1D,
      implementation, window, next, positions);
  }

  /**
   * The scan kernels' table of A = −exp(ALog), D and deltaBias, `[E, N + 2]`: on the kernels one
   * launch (and its gradient one), elsewhere (where the layer keeps it as it is built) tfjs ops.
   */
  private table(): tf.Tensor2D {
    const [D, bias] = [this.weight('D').read() as tf.Tensor1D, this.weight('deltaBias').read() as tf.Tensor1D];
    if (!useKernel(this.layerName, this.activeImplementation())) return channelTable(this.stateMatrix(), D, bias);
    return tableFromWeights(this.weight('ALog').read() as tf.Tensor2D, D, bias);
  }

  /** A = −exp(ALog), `[E, N]`. */
  private stateMatrix(): tf.Tensor2D {
    return tf.neg(tf.exp(this.weight('ALog').read())) as tf.Tensor2D;
  }

  /**
   * A fresh decode state for `batch` sequences: zeros `conv [B, dConv − 1, E]` and
   * `ssm [B, E, N]`, as if every token before the first were zero, and every position 0.
   * `batch` is a non-negative integer.
   */
  initState(batch: number): SelectiveSSMState {
    this.checkBatch(batch);
    const { E, N } = this.dims();
    return { conv: tf.zeros([batch, this.convKernel - 1, E]), ssm: tf.zeros([batch, E, N]), positions: tf.zeros([batch], 'int32') };
  }

  /**
   * Runs one token through the block: its inner token joins the convolution's window, the
   * scan advances one step with `ops.selectiveScanStep`, and every row's position advances by
   * one. Stepping through a sequence reproduces the parallel forward. The input state is left
   * as it is: dispose it once it is no longer needed.
   *
   * @param x `[B, D]` float32, the next token.
   * @param state from {@link SelectiveSSM.initState}, a previous step or a prefill.
   * @returns `[y, nextState]` with y `[B, D]`.
   */
  step(x: tf.Tensor2D, state: SelectiveSSMState): [tf.Tensor2D, SelectiveSSMState] {
    const { D } = this.dims();
    checkStepToken(this.layerName, x, D);
    const Bsz = x.shape[0];
    this.checkState(`${this.layerName}.step`, state, Bsz);
    return tf.tidy((): [tf.Tensor2D, SelectiveSSMState] => {
      const implementation = this.activeImplementation();
      const kernel = useKernel(this.layerName, implementation);
      // x's inner half and z: on the kernels, the convolution and the step read each where it
      // lies in the in projection [B, 2E], where slicing them out took two launches
      const projected = this.dense(x, 'inProj') as tf.Tensor2D;
      const [inner, z] = kernel ? [projected, projected] : copy.split(projected, 2, -1) as [tf.Tensor2D, tf.Tensor2D];
      // the convolution's launch also advances every row's position
      const conv = this.convolve(inner.expandDims(1) as tf.Tensor3D, implementation, state.conv, true, state.positions);
      const u = conv.u.squeeze([1]) as tf.Tensor2D;
      const options = {
        D: this.weight('D').read() as tf.Tensor1D, z, deltaBias: this.weight('deltaBias').read() as tf.Tensor1D, deltaSoftplus: true,
      };
      let next: { output: tf.Tensor2D; state: tf.Tensor3D };
      if (kernel) {
        const inputs = this.lowRankInputs(u);
        next = stepKernel(u, inputs.dtProj, this.kept(CHANNELS) as tf.Tensor2D, inputs.projected as tf.Tensor2D, state.ssm,
          { ...options, zInProjection: true, lowRank: true });
      } else {
        const { delta, B, C } = this.scanInputs(u);
        next = selectiveScanStep(u, delta as tf.Tensor2D, this.stateMatrix(), B as tf.Tensor2D, C as tf.Tensor2D, state.ssm,
          { ...options, implementation });
      }
      const y = this.dense(next.output, 'outProj') as tf.Tensor2D;
      return [y, {
        conv: conv.next!,
        ssm: next.state,
        positions: conv.positions!,
      }];
    });
  }

  /**
   * Runs a prompt through the block in parallel (the scan kernels on webgpu): the outputs, and
   * the state that stepping its real tokens one by one from `state` would leave. x is
   * right-padded: row b holds `options.lengths[b]` real tokens (default all T), and its state
   * advances by that many from its own position. The prompt continues `state`: its
   * convolution window precedes x and the scan starts from its `ssm`. At a padded step the
   * scan's Δ is 0, which leaves each row's state as its last real token left it, and the
   * convolution window is gathered per row from the last dConv − 1 inner tokens before its end.
   * The input state is left as it is: dispose it once it is no longer needed.
   *
   * @param x `[B, T, D]` float32, the prompt, right-padded.
   * @param state from {@link SelectiveSSM.initState}, {@link SelectiveSSM.step} or a previous
   *   prefill; default a fresh state.
   * @returns `[y, nextState]`, y `[B, T, D]`; y at a padded step (t ≥ lengths[b]) is unspecified
   *   but finite (padded tokens are read as zeros, so even a NaN there reaches no output).
   *
   * @example
   * ```ts
   * const layer = layers.selectiveSSM({ stateSize: 4 });
   * layer.apply(tf.zeros([1, 1, 8]));                       // builds it for D = 8
   * const [y, state] = layer.prefill(tf.randomNormal([2, 5, 8]), undefined, { lengths: [5, 2] });
   * const [next, after] = layer.step(tf.randomNormal([2, 8]), state);   // row 0 at 5, row 1 at 2
   * after.positions.print();                                 // [6, 3]
   * tf.dispose([y, state, next, after]);
   * ```
   */
  prefill(x: tf.Tensor3D, state?: SelectiveSSMState, options?: PrefillOptions): [tf.Tensor3D, SelectiveSSMState] {
    return this.prefillState(x, state, options, {
      init: (B) => this.initState(B),
      check: (method, given, B) => this.checkState(method, given, B),
      run: ({ x: clean, start, lengths, padded }) => {
        if (this.runsUntaped(clean)) {
          const { y, conv, ssm } = this.untapedBlock(clean, { conv: start.conv, ssm: start.ssm, ...(padded ? { lengths } : {}) });
          return [y, { conv: conv!, ssm }];
        }
        const { y, inner, ssm } = this.block(clean, { conv: start.conv, ssm: start.ssm, ...(padded ? { lengths } : {}) });
        return [y, { conv: windowAfter(start.conv, inner, lengths), ssm: ssm! }];
      },
    });
  }

  /** Checks a decode state given to `method`: its shapes for a batch of B, and its positions. */
  private checkState(method: string, state: SelectiveSSMState, B: number): void {
    const { E, N } = this.dims();
    const check = (field: 'conv' | 'ssm', shape: number[], layout: string[]) => {
      const t: unknown = state?.[field];
      // with dConv = 1 the window is empty, which checkTensor refuses
      if (shape.includes(0) && t instanceof tf.Tensor && t.dtype === 'float32') checkShape(method, `state.${field}`, t, shape, layout);
      else checkShape(method, `state.${field}`, checkTensor(method, `state.${field}`, t, layout), shape, layout);
    };
    check('conv', [B, this.convKernel - 1, E], ['B', 'dConv − 1', 'E']);
    check('ssm', [B, E, N], ['B', 'E', 'N']);
    checkPositions(method, state, B);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      expand: this.expand,
      stateSize: this.stateSize,
      dtRank: this.dtRank,
      convKernel: this.convKernel,
      dtMin: this.dtMin,
      dtMax: this.dtMax,
      dtInitFloor: this.dtInitFloor,
    };
  }
}
registerMixerLayer(SelectiveSSM);

/**
 * Creates a {@link SelectiveSSM} layer (the Mamba block), as `tf.layers.*` factories do.
 *
 * @example
 * ```ts
 * const mixer = layers.selectiveSSM({ expand: 2, stateSize: 16, convKernel: 4 });
 * mixer.apply(tf.randomNormal([2, 32, 64])); // [2, 32, 64]
 * ```
 */
export function selectiveSSM(args?: SelectiveSSMArgs): SelectiveSSM {
  return new SelectiveSSM(args);
}
