// Label sets: the user picks which emotions to train on; ids are the labels' positions in sorted order, so a label
// set written as ["sadness", "anger"] and one written ["anger", "sadness"] give the same ids.
import type { DataItem } from './manifest.js';

/** Modified ShEMO's default training labels: all but 'fear' (32 clips), as in the published recipe. */
export const SHEMO_LABELS = ['anger', 'happiness', 'neutral', 'sadness', 'surprise'] as const;
/** Every emotion in Modified ShEMO. */
export const SHEMO_ALL_LABELS = ['anger', 'fear', 'happiness', 'neutral', 'sadness', 'surprise'] as const;

export class LabelSet {
  readonly labels: readonly string[];
  private readonly index: Map<string, number>;

  constructor(labels: Iterable<string>) {
    const uniq = [...new Set([...labels].map(normalizeLabel))].sort();
    if (uniq.length < 2) throw new Error(`a label set needs at least 2 labels (got ${JSON.stringify(uniq)})`);
    this.labels = uniq;
    this.index = new Map(uniq.map((l, i) => [l, i]));
  }

  get size(): number {
    return this.labels.length;
  }

  has(label: string): boolean {
    return this.index.has(normalizeLabel(label));
  }

  /** The id of a label (throws for a label outside the set). */
  id(label: string): number {
    const i = this.index.get(normalizeLabel(label));
    if (i === undefined) throw new Error(`label '${label}' is not in the label set [${this.labels.join(', ')}]`);
    return i;
  }

  name(id: number): string {
    const l = this.labels[id];
    if (l === undefined) throw new Error(`label id ${id} out of range 0..${this.labels.length - 1}`);
    return l;
  }

  /** id2label / label2id maps in Hugging Face config.json form. */
  toConfig(): { id2label: Record<string, string>; label2id: Record<string, number> } {
    return {
      id2label: Object.fromEntries(this.labels.map((l, i) => [String(i), l])),
      label2id: Object.fromEntries(this.labels.map((l, i) => [l, i])),
    };
  }

  /** All labels present in the items (sorted). */
  static fromItems(items: readonly DataItem[]): LabelSet {
    return new LabelSet(items.map((it) => it.label));
  }
}

export function normalizeLabel(label: string): string {
  return label.trim().toLowerCase();
}

/** Keep the items whose label is in the set; report how many of each other label were dropped. */
export function selectLabels(items: readonly DataItem[], set: LabelSet): { items: DataItem[]; dropped: Record<string, number> } {
  const kept: DataItem[] = [];
  const dropped: Record<string, number> = {};
  for (const it of items) {
    if (set.has(it.label)) kept.push({ ...it, label: normalizeLabel(it.label) });
    else dropped[it.label] = (dropped[it.label] ?? 0) + 1;
  }
  return { items: kept, dropped };
}

/** Count of items per label, in the label set's order when given (else sorted). */
export function labelCounts(items: readonly DataItem[], set?: LabelSet): Record<string, number> {
  const out: Record<string, number> = {};
  for (const l of set?.labels ?? [...new Set(items.map((it) => it.label))].sort()) out[l] = 0;
  for (const it of items) out[it.label] = (out[it.label] ?? 0) + 1;
  return out;
}
