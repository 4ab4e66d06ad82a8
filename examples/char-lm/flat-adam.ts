/**
 * Adam over one flat buffer: the update of `tf.train.adam`, element for element, but with the
 * moments of every variable in two flat tensors, so that a step is about a dozen element-wise
 * kernels over all the weights, plus one slice per variable, instead of about twenty kernels per
 * variable. On WebGPU a kernel dispatch has a fixed cost; for a small model (the char-lm model at
 * width 64 has 28 to 38 weight tensors) tfjs's Adam was about 540 of a training step's 1,465
 * kernels (counted with `tf.profile`). The weights too are kept flat from one step to the next
 * (one more copy of them), so that the update is one add: the variables are then slices of it,
 * and a variable written between steps (`setWeights`, `assign`) is noticed by its data and read anew.
 *
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs';

/** Adam with its moments in two flat tensors: `tf.train.adam(learningRate)`'s update, in fewer kernels. */
export class FlatAdam extends tf.Optimizer {
  static className = 'FlatAdam';

  private readonly beta1 = 0.9;
  private readonly beta2 = 0.999;
  /** tfjs's Adam takes the backend's epsilon, 1e-7 in float32. */
  private readonly epsilon = tf.backend().epsilon();
  /** The variables' names in the order of the flat buffers, fixed by the first step. */
  private names: string[] | null = null;
  private moments: { first: tf.Variable; second: tf.Variable } | null = null;
  /**
   * β₁, 1 − β₁, β₂, 1 − β₂, ε and −learning rate as scalars made once: a number given to an op
   * is made into a tensor on the CPU and uploaded at every call.
   */
  private constants: tf.Scalar[] | null = null;
  /** The flat weights the last step wrote, and the data of the variables it cut them into. */
  private flat: { weights: tf.Tensor; cut: tf.DataId[] } | null = null;
  /** β₁ᵗ and β₂ᵗ, multiplied up in float32 as tfjs's Adam does, so that the corrections match its own. */
  private power1 = Math.fround(this.beta1);
  private power2 = Math.fround(this.beta2);

  /**
   * @example
   * ```ts
   * const optimizer = new FlatAdam(1e-3);
   * optimizer.minimize(() => lossOf(model, x, y, true));
   * ```
   */
  constructor(private readonly learningRate: number) {
    super();
  }

  applyGradients(variableGradients: tf.NamedTensorMap | { name: string; tensor: tf.Tensor }[]): void {
    const grads = Array.isArray(variableGradients)
      ? variableGradients
      : Object.entries(variableGradients).map(([name, tensor]) => ({ name, tensor }));
    const names = grads.map((g) => g.name);
    if (this.names === null) this.names = names;
    if (names.length !== this.names.length || names.some((n, i) => n !== this.names![i])) {
      throw new Error(`FlatAdam.applyGradients: the gradients must name the same variables in the same order every step; ` +
        `the first step named ${this.names.join(', ')}, this one ${names.join(', ')}.`);
    }
    const variables = names.map((name) => tf.engine().registeredVariables[name]!);
    const sizes = variables.map((v) => v.size);
    const total = sizes.reduce((a, b) => a + b, 0);
    // in a tidy, which frees the zeros and keeps the variables
    this.moments ??= tf.tidy(() => ({ first: tf.variable(tf.zeros([total]), false), second: tf.variable(tf.zeros([total]), false) }));
    const { first, second } = this.moments;
    const { beta1, beta2 } = this;
    this.constants ??= [beta1, 1 - beta1, beta2, 1 - beta2, this.epsilon, -this.learningRate].map((c) => tf.keep(tf.scalar(c)));
    const [b1, c1, b2, c2, epsilon, step] = this.constants as [tf.Scalar, tf.Scalar, tf.Scalar, tf.Scalar, tf.Scalar, tf.Scalar];
    tf.tidy(() => {
      const g = tf.concat(grads.map((x) => tf.reshape(x.tensor, [-1])));
      const m = tf.add(tf.mul(first, b1), tf.mul(g, c1));
      const v = tf.add(tf.mul(second, b2), tf.mul(tf.square(g), c2));
      first.assign(m);
      second.assign(v);
      // the bias corrections change every step: their two scalars are made anew
      const mHat = tf.div(m, Math.fround(1 - this.power1));
      const vHat = tf.div(v, Math.fround(1 - this.power2));
      const update = tf.mul(tf.div(mHat, tf.add(tf.sqrt(vHat), epsilon)), step);
      // the flat weights of the last step where every variable still holds its slice of them
      const last = this.flat;
      const current = last && variables.every((v, n) => v.dataId === last.cut[n])
        ? last.weights : tf.concat(variables.map((v) => tf.reshape(v, [-1])));
      const weights = tf.keep(tf.add(update, current));
      last?.weights.dispose();
      tf.split(weights, sizes).forEach((part, n) => {
        const variable = variables[n]!;
        variable.assign(tf.reshape(part, variable.shape));
      });
      this.flat = { weights, cut: variables.map((v) => v.dataId) };
    });
    this.power1 = Math.fround(this.power1 * Math.fround(beta1));
    this.power2 = Math.fround(this.power2 * Math.fround(beta2));
    this.incrementIterations();
  }

  override dispose(): void {
    super.dispose();
    if (this.moments) tf.dispose([this.moments.first, this.moments.second]);
    if (this.constants) tf.dispose(this.constants);
    this.flat?.weights.dispose();
    this.flat = null;
    this.moments = null;
    this.constants = null;
  }

  getConfig(): tf.serialization.ConfigDict {
    return { learningRate: this.learningRate };
  }
}
