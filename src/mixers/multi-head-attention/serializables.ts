import * as tf from '@tensorflow/tfjs';
import { argumentError, describe } from '../../validate.js';

/** The kinds of tfjs objects a layer argument can name. */
export type SerializableKind = 'initializer' | 'regularizer' | 'constraint';

/**
 * An initialiser, regulariser or constraint as tfjs layers take it: an instance
 * (`tf.initializers.heNormal({})`), an identifier (`'glorotUniform'`, `'l1l2'`, `'maxNorm'`), or
 * its serialised form `{ className, config }` (what a saved or converted Keras model holds).
 */
export type SerializableArg<T extends tf.serialization.Serializable> =
  T | string | { className: string; config?: tf.serialization.ConfigDict } | null;

/** tfjs's unexported base class of each kind, reached through an instance of a subclass. */
const BASES: Record<SerializableKind, () => unknown> = {
  initializer: () => Object.getPrototypeOf(tf.initializers.zeros().constructor),
  regularizer: () => Object.getPrototypeOf(tf.regularizers.l1l2().constructor),
  constraint: () => Object.getPrototypeOf(tf.constraints.nonNeg().constructor),
};

/**
 * The instance `value` names (see {@link SerializableArg}), or `null` for `null`/`undefined`;
 * throws, naming the layer and argument, for a value that names no registered class of `kind`.
 *
 * @example
 * ```ts
 * resolveSerializable('MultiHeadAttention', 'kernelInitializer', 'initializer', 'heNormal'); // a HeNormal
 * ```
 */
export function resolveSerializable(
  layer: string, name: string, kind: SerializableKind, value: unknown,
): tf.serialization.Serializable | null {
  if (value == null) return null;
  const base = BASES[kind]() as abstract new (...args: never[]) => tf.serialization.Serializable;
  if (value instanceof base) return value;
  let className: unknown;
  let config: unknown = {};
  if (typeof value === 'string') {
    className = value.charAt(0).toUpperCase() + value.slice(1);
  } else if (typeof value === 'object' && !Array.isArray(value)) {
    ({ className, config = {} } = value as { className?: unknown; config?: unknown });
  }
  const entry = typeof className === 'string' ? tf.serialization.SerializationMap.getMap().classNameMap[className] : undefined;
  // check the class before constructing it: a layer's name ('dense') must not build a layer
  const made = entry && entry[0].prototype instanceof base && config !== null && typeof config === 'object'
    ? entry[1](entry[0], config as tf.serialization.ConfigDict) : undefined;
  if (!(made instanceof base)) {
    throw argumentError(layer, `argument '${name}' must be a tfjs ${kind}, its identifier (as '${
      { initializer: 'glorotUniform', regularizer: 'l1l2', constraint: 'maxNorm' }[kind]}') or { className, config }; ` +
      `received ${describe(value)}.`);
  }
  return made;
}

/** `{ className, config }` of an instance, as tfjs writes these objects in a layer's config, or `null`. */
export function serializeObject(value: tf.serialization.Serializable | null): tf.serialization.ConfigDict | null {
  return value === null ? null : { className: value.getClassName(), config: value.getConfig() };
}
