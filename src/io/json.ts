// Bounded JSON for files a user hands us (config.json, preprocessor_config.json, shard indexes, safetensors headers,
// manifests): V8's JSON.parse takes '[[[[...' a million levels deep, but anything that walks the result afterwards
// (JSON.stringify in an error message, a spread, a recursive check) overflows the stack with a raw RangeError, and a
// multi-gigabyte "config" would be parsed whole. parseJsonBounded checks the size and scans the nesting depth
// (iteratively, outside strings) before parsing, and every failure is one Error that names the file.

export interface JsonLimits {
  /** largest accepted text, in UTF-16 code units (default 16 Mi) */
  maxChars?: number;
  /** deepest accepted nesting of arrays and objects (default 64) */
  maxDepth?: number;
}

export const JSON_MAX_CHARS = 16 * 1024 * 1024;
export const JSON_MAX_DEPTH = 64;

/** Deepest nesting of [ and { in `text`, not counting brackets inside strings. Stops early once past `limit`. */
export function jsonNestingDepth(text: string, limit = Infinity): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) {
        max = depth;
        if (max > limit) return max;
      }
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

/** JSON.parse with a size and nesting bound; errors start with `fileName: `. */
export function parseJsonBounded(text: string, fileName: string, limits: JsonLimits = {}): unknown {
  const maxChars = limits.maxChars ?? JSON_MAX_CHARS;
  const maxDepth = limits.maxDepth ?? JSON_MAX_DEPTH;
  if (typeof text !== 'string') throw new Error(`${fileName}: expected JSON text`);
  if (text.length > maxChars) throw new Error(`${fileName}: ${text.length} characters of JSON, over the limit of ${maxChars} (not a configuration file?)`);
  const depth = jsonNestingDepth(text, maxDepth);
  if (depth > maxDepth) throw new Error(`${fileName}: JSON nested deeper than ${maxDepth} levels (damaged or not a configuration file)`);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${fileName}: not valid JSON (${(e as Error).message})`);
  }
}

/** The bytes as UTF-8 text (fatal on invalid sequences), then parseJsonBounded. */
export function parseJsonBytesBounded(bytes: Uint8Array, fileName: string, limits: JsonLimits = {}): unknown {
  const maxChars = limits.maxChars ?? JSON_MAX_CHARS;
  if (bytes.length > maxChars * 3) throw new Error(`${fileName}: ${bytes.length} bytes of JSON, over the limit (not a configuration file?)`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new Error(`${fileName}: JSON is not valid UTF-8`);
  }
  return parseJsonBounded(text, fileName, limits);
}
