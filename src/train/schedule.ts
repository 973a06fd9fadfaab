// Learning-rate schedule of the original recipe (Hugging Face get_linear_schedule_with_warmup): linear warm-up from 0
// over `warmupSteps` optimizer steps, then linear decay to 0 at `totalSteps`.
export function linearWarmupDecay(step: number, baseLr: number, warmupSteps: number, totalSteps: number): number {
  if (step < warmupSteps) return (baseLr * step) / Math.max(1, warmupSteps);
  return baseLr * Math.max(0, (totalSteps - step) / Math.max(1, totalSteps - warmupSteps));
}
