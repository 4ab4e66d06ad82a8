/**
 * The ONNX models the peers page runs, written as protobuf bytes here (no ONNX tooling in the
 * bench): a graph of one node, query, key and value in and the output out, each float32
 * `[B, T, H·K]`. Field numbers are onnx.proto's (ModelProto, GraphProto, NodeProto,
 * AttributeProto, ValueInfoProto, TypeProto, TensorShapeProto).
 *
 * @packageDocumentation
 */

/** Varint bytes of a non-negative integer below 2⁵³. */
function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return out;
}

const utf8 = new TextEncoder();
/** A varint field (wire type 0). */
const int = (field: number, n: number): number[] => [...varint(field << 3), ...varint(n)];
/** A length-delimited field (wire type 2): a string or an embedded message's bytes. */
const bytes = (field: number, body: number[] | string): number[] => {
  const b = typeof body === 'string' ? [...utf8.encode(body)] : body;
  return [...varint((field << 3) | 2), ...varint(b.length), ...b];
};

/** ValueInfoProto of a float32 tensor named `name`, its dimensions numbers or symbolic names. */
function floatTensor(name: string, dims: Array<number | string>): number[] {
  const shape = dims.flatMap((d) => bytes(1, typeof d === 'number' ? int(1, d) : bytes(2, d)));
  const tensorType = [...int(1, 1 /* FLOAT */), ...bytes(2, shape)];
  return [...bytes(1, name), ...bytes(2, bytes(1, tensorType))];
}

/** An INT attribute (AttributeProto type 2). */
const intAttribute = (name: string, value: number): number[] => bytes(5, [...bytes(1, name), ...int(3, value), ...int(20, 2)]);

/** What {@link multiHeadAttentionModel} builds. */
export interface MultiHeadAttentionModel {
  /** Query heads; K = hidden / numHeads. */
  numHeads: number;
  /** The width H·K of query, key, value and output. */
  hidden: number;
  /** Each query sees the keys at and before its position (`unidirectional = 1`). */
  causal: boolean;
}

/**
 * ONNX Runtime's `com.microsoft` `MultiHeadAttention` alone: inputs `query`, `key`, `value`
 * `[1, T, hidden]` (T symbolic), output `output` of the same shape; the default scale 1/√K.
 */
export function multiHeadAttentionModel(m: MultiHeadAttentionModel): Uint8Array {
  const io = ['query', 'key', 'value'];
  const node = [
    ...io.flatMap((name) => bytes(1, name)), ...bytes(2, 'output'), ...bytes(3, 'attention'), ...bytes(4, 'MultiHeadAttention'),
    ...intAttribute('num_heads', m.numHeads), ...intAttribute('unidirectional', m.causal ? 1 : 0), ...bytes(7, 'com.microsoft'),
  ];
  const dims = [1, 'T', m.hidden];
  const graph = [
    ...bytes(1, node), ...bytes(2, 'peers'),
    ...io.flatMap((name) => bytes(11, floatTensor(name, dims))), ...bytes(12, floatTensor('output', dims)),
  ];
  const opset = (domain: string, version: number) => bytes(8, [...bytes(1, domain), ...int(2, version)]);
  return Uint8Array.from([...int(1, 8 /* IR version */), ...bytes(2, 'tfjs-mixers bench'), ...bytes(7, graph), ...opset('', 17), ...opset('com.microsoft', 1)]);
}
