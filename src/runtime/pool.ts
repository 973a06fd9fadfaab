// Buffer pool: storage buffers are rounded up to a size class (4 classes per power of two, so at most 25% waste above
// 1 KiB) and kept on a free list when released, because creating GPU buffers is slow and fragmentation-prone.
// inUseBytes / peakBytes count class sizes of buffers handed out; reservedBytes counts everything allocated.

export interface PooledBuffer {
  readonly buffer: GPUBuffer;
  readonly size: number; // class size in bytes
  readonly label: string;
  released: boolean;
  /**
   * Changes whenever something may write the buffer (a dispatch binding it read_write, a copy into it, an upload):
   * a value from one global counter, so two equal stamps on the same buffer object mean no write in between. What
   * is derived from a buffer's contents may be kept while its stamp holds (src/runtime/derived.ts).
   */
  writeStamp: number;
}

let lastWriteStamp = 0;

/** Record that `p` may have been written (the runtime calls this for every write it records). */
export function markWritten(p: PooledBuffer): void {
  p.writeStamp = ++lastWriteStamp;
}

const USAGE = 0x80 /* STORAGE */ | 0x04 /* COPY_SRC */ | 0x08; /* COPY_DST */

export function sizeClass(bytes: number): number {
  const b = Math.max(256, Math.ceil(bytes / 16) * 16);
  if (b <= 1024) return Math.ceil(b / 256) * 256;
  const pow = 2 ** Math.floor(Math.log2(b));
  const step = pow / 4;
  return Math.ceil(b / step) * step;
}

export class BufferPool {
  private free = new Map<number, GPUBuffer[]>();
  inUseBytes = 0;
  peakBytes = 0;
  reservedBytes = 0;
  allocations = 0;

  constructor(
    private readonly device: GPUDevice,
    private readonly maxBufferSize: number,
    private readonly onAllocate: (label: string, create: () => GPUBuffer) => GPUBuffer,
  ) {}

  acquire(bytes: number, label: string): PooledBuffer {
    const size = sizeClass(bytes);
    if (size > this.maxBufferSize) {
      throw new Error(`allocation '${label}' of ${bytes} bytes exceeds the adapter's maxBufferSize (${this.maxBufferSize})`);
    }
    const list = this.free.get(size);
    let buffer = list?.pop();
    if (!buffer) {
      buffer = this.onAllocate(label, () => this.device.createBuffer({ size, usage: USAGE, label }));
      this.reservedBytes += size;
      this.allocations++;
    }
    this.inUseBytes += size;
    if (this.inUseBytes > this.peakBytes) this.peakBytes = this.inUseBytes;
    return { buffer, size, label, released: false, writeStamp: ++lastWriteStamp };
  }

  release(p: PooledBuffer): void {
    if (p.released) throw new Error(`buffer '${p.label}' released twice`);
    p.released = true;
    this.inUseBytes -= p.size;
    let list = this.free.get(p.size);
    if (!list) this.free.set(p.size, (list = []));
    list.push(p.buffer);
  }

  resetPeak(): void {
    this.peakBytes = this.inUseBytes;
  }

  /** Destroy every free buffer (returns the bytes given back). */
  trim(): number {
    let freed = 0;
    for (const [size, list] of this.free) {
      for (const b of list) {
        b.destroy();
        freed += size;
      }
    }
    this.free.clear();
    this.reservedBytes -= freed;
    return freed;
  }
}
