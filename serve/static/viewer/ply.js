// Reads the labelled PLY that `POST /segment` answers with `Accept: application/x-ply`
// (`seg3d.labelled`): binary_little_endian 1.0, one `vertex` element with float x, y, z, intensity,
// uchar red, green, blue and uchar label, one vertex per input point in input order.
// This is the service's answer format, not a point-file reader: every point file is read on the
// server. The header is still read by name and type (not by fixed offsets), so an added property
// does not break the page, and anything else is refused with a message saying what is wrong.

const TYPE_SIZES = {
  char: 1, uchar: 1, int8: 1, uint8: 1,
  short: 2, ushort: 2, int16: 2, uint16: 2,
  int: 4, uint: 4, int32: 4, uint32: 4,
  float: 4, float32: 4, double: 8, float64: 8,
};

// the properties the viewer draws with, and the types the contract gives them
const NEEDED = {
  x: ["float", "float32"], y: ["float", "float32"], z: ["float", "float32"],
  red: ["uchar", "uint8"], green: ["uchar", "uint8"], blue: ["uchar", "uint8"],
  label: ["uchar", "uint8"],
};

const END_HEADER = "end_header\n";

export class PlyError extends Error {}

/**
 * Parse a labelled PLY answer.
 * @param {ArrayBuffer} buffer the whole answer
 * @returns {{count: number, positions: Float32Array, colours: Uint8Array, labels: Uint8Array}}
 *   positions and colours interleaved by point (x, y, z / r, g, b), labels one per point
 */
export function parseLabelledPly(buffer) {
  const bytes = new Uint8Array(buffer);
  // the header is a few hundred ASCII bytes: look for its end in the first 64 KiB (a single-byte
  // decoding, so that string indices are byte offsets)
  const head = new TextDecoder("latin1").decode(bytes.subarray(0, Math.min(bytes.length, 65536)));
  const end = head.indexOf(END_HEADER);
  if (!head.startsWith("ply\n") || end < 0) {
    throw new PlyError("the answer is not a PLY file (no 'ply' magic or no 'end_header')");
  }
  const lines = head.slice(0, end).split("\n").map((l) => l.trim()).filter((l) => l.length > 0);
  let format = null;
  const elements = [];
  for (const line of lines.slice(1)) {
    const words = line.split(/\s+/);
    if (words[0] === "format") {
      format = `${words[1]} ${words[2]}`;
    } else if (words[0] === "element") {
      elements.push({ name: words[1], count: Number(words[2]), properties: [] });
    } else if (words[0] === "property") {
      if (elements.length === 0) throw new PlyError(`PLY property before any element: '${line}'`);
      if (words[1] === "list") throw new PlyError(`PLY list properties are not expected: '${line}'`);
      elements[elements.length - 1].properties.push({ type: words[1], name: words[2] });
    }
  }
  if (format !== "binary_little_endian 1.0") {
    throw new PlyError(`PLY format '${format}': the viewer expects binary_little_endian 1.0`);
  }
  if (elements.length === 0 || elements[0].name !== "vertex") {
    throw new PlyError("the PLY answer's first element is not 'vertex'");
  }
  const vertex = elements[0];
  const count = vertex.count;
  if (!Number.isInteger(count) || count < 0) throw new PlyError(`bad vertex count '${vertex.count}'`);
  let stride = 0;
  const offsets = {};
  for (const p of vertex.properties) {
    const size = TYPE_SIZES[p.type];
    if (size === undefined) throw new PlyError(`unknown PLY type '${p.type}' of property '${p.name}'`);
    offsets[p.name] = { offset: stride, type: p.type };
    stride += size;
  }
  for (const [name, types] of Object.entries(NEEDED)) {
    const found = offsets[name];
    if (!found) throw new PlyError(`the PLY answer has no '${name}' property`);
    if (!types.includes(found.type)) {
      throw new PlyError(`PLY property '${name}' is ${found.type}, expected ${types[0]}`);
    }
  }
  const start = end + END_HEADER.length;
  if (bytes.length < start + count * stride) {
    throw new PlyError(
      `the PLY answer is truncated: ${count} vertices of ${stride} bytes need ` +
        `${start + count * stride} bytes, got ${bytes.length}`,
    );
  }
  const view = new DataView(buffer, start, count * stride);
  const positions = new Float32Array(count * 3);
  const colours = new Uint8Array(count * 3);
  const labels = new Uint8Array(count);
  const [ox, oy, oz] = [offsets.x.offset, offsets.y.offset, offsets.z.offset];
  const [or, og, ob] = [offsets.red.offset, offsets.green.offset, offsets.blue.offset];
  const ol = offsets.label.offset;
  for (let i = 0, at = 0; i < count; i++, at += stride) {
    positions[3 * i] = view.getFloat32(at + ox, true);
    positions[3 * i + 1] = view.getFloat32(at + oy, true);
    positions[3 * i + 2] = view.getFloat32(at + oz, true);
    colours[3 * i] = view.getUint8(at + or);
    colours[3 * i + 1] = view.getUint8(at + og);
    colours[3 * i + 2] = view.getUint8(at + ob);
    labels[i] = view.getUint8(at + ol);
  }
  return { count, positions, colours, labels };
}
