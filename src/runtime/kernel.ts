// A kernel family is one WGSL file from kernels/ (bundled as text), holding forward and backward entry points.
// Its bindings are reflected with wgsl_reflect, so every dispatch is checked by name against what the shader declares,
// and uniform structs are packed from plain JS objects by member name.
import { WgslReflect } from 'wgsl_reflect/wgsl_reflect.module.js';

export type ScalarType = 'f32' | 'f16' | 'i32' | 'u32';

export interface UniformMember {
  name: string;
  offset: number;
  type: ScalarType;
}

export interface BindingInfo {
  name: string;
  binding: number;
  kind: 'uniform' | 'read-only-storage' | 'storage';
  /** element type of a storage array (atomics are reported as 'u32' or 'i32') */
  elementType?: ScalarType;
  /** uniform struct layout */
  members?: UniformMember[];
  size?: number;
}

export interface EntryInfo {
  name: string;
  bindings: BindingInfo[];
}

/** Template parameters: `alias NAME = x;` and `const NAME = x;` / `const NAME: t = x;` lines are rewritten. */
export type Defines = Record<string, string | number>;

export class KernelFamily {
  readonly name: string;
  readonly source: string;
  private readonly variants = new Map<string, { code: string; entries: Map<string, EntryInfo> }>();

  constructor(name: string, source: string) {
    this.name = name;
    this.source = source;
  }

  /** The WGSL text after the template step, with `enable f16;` added when any define selects f16. */
  variant(defines: Defines = {}): { code: string; entries: Map<string, EntryInfo>; key: string } {
    const key = JSON.stringify(Object.entries(defines).sort());
    let v = this.variants.get(key);
    if (!v) {
      const code = applyDefines(this.name, this.source, defines);
      v = { code, entries: reflectEntries(this.name, code) };
      this.variants.set(key, v);
    }
    return { ...v, key };
  }

  entry(entryPoint: string, defines: Defines = {}): EntryInfo {
    const { entries } = this.variant(defines);
    const e = entries.get(entryPoint);
    if (!e) {
      throw new Error(`kernel ${this.name}: no entry point '${entryPoint}' (has: ${[...entries.keys()].join(', ')})`);
    }
    return e;
  }
}

export function defineKernel(name: string, source: string): KernelFamily {
  return new KernelFamily(name, source);
}

function applyDefines(kernel: string, source: string, defines: Defines): string {
  let code = source;
  let needsF16 = false;
  for (const [name, value] of Object.entries(defines)) {
    const v = String(value);
    if (v === 'f16') needsF16 = true;
    const alias = new RegExp(`\\balias\\s+${name}\\s*=\\s*[^;]+;`);
    const konst = new RegExp(`\\bconst\\s+${name}\\s*(:\\s*[A-Za-z0-9_<>]+\\s*)?=\\s*[^;]+;`);
    if (alias.test(code)) code = code.replace(alias, `alias ${name} = ${v};`);
    else if (konst.test(code)) code = code.replace(konst, (_m, ty) => `const ${name}${ty ?? ' '}= ${v};`);
    else throw new Error(`kernel ${kernel}: template parameter '${name}' is not declared as an alias or const`);
  }
  if (needsF16 && !/^\s*enable\s+f16\s*;/m.test(code)) code = `enable f16;\n${code}`;
  return code;
}

function scalarOf(name: string | undefined): ScalarType | undefined {
  if (name === 'f32' || name === 'f16' || name === 'i32' || name === 'u32') return name;
  return undefined;
}

function reflectEntries(kernel: string, code: string): Map<string, EntryInfo> {
  let reflect: WgslReflect;
  try {
    reflect = new WgslReflect(code);
  } catch (e) {
    throw new Error(`kernel ${kernel}: WGSL could not be parsed for reflection: ${(e as Error).message}`);
  }
  const out = new Map<string, EntryInfo>();
  for (const fn of reflect.entry.compute) {
    const bindings: BindingInfo[] = [];
    for (const r of fn.resources) {
      if (r.group !== 0) throw new Error(`kernel ${kernel}.${fn.name}: binding ${r.name} uses group ${r.group}; only group 0 is supported`);
      const type = r.type as any;
      if (r.resourceType === 0) {
        const members: UniformMember[] = (type.members ?? []).map((m: any) => {
          const t = scalarOf(m.type?.name);
          if (!t) throw new Error(`kernel ${kernel}.${fn.name}: uniform ${r.name}.${m.name} has type ${m.type?.name}; only scalar members are supported`);
          return { name: m.name, offset: m.offset, type: t };
        });
        bindings.push({ name: r.name, binding: r.binding, kind: 'uniform', members, size: type.size });
      } else if (r.resourceType === 1) {
        let fmt = type.format?.name as string | undefined;
        if (fmt === 'atomic') fmt = type.format?.format?.name;
        const elementType = scalarOf(fmt) ?? (fmt?.startsWith('vec') ? scalarOf(type.format?.format?.name) : undefined);
        bindings.push({
          name: r.name,
          binding: r.binding,
          kind: r.access === 'read' ? 'read-only-storage' : 'storage',
          elementType,
        });
      } else {
        throw new Error(`kernel ${kernel}.${fn.name}: binding ${r.name} is not a buffer; only buffers are supported`);
      }
    }
    bindings.sort((a, b) => a.binding - b.binding);
    out.set(fn.name, { name: fn.name, bindings });
  }
  return out;
}
