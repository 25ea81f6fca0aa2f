import { createHash } from "node:crypto";
import type { FileHandle } from "node:fs/promises";
import { PAGE_SIZE } from "./format.js";

const ZERO_PAGE = Buffer.alloc(PAGE_SIZE);
/** Untouched memory is the common case: it is skipped a block of pages at a time. */
const BLOCK_PAGES = 16;
const ZERO_BLOCK = Buffer.alloc(PAGE_SIZE * BLOCK_PAGES);
/** Largest single write: keeps progress moving and the event loop turning on big guests. */
const WRITE_CHUNK = 8 * 2 ** 20;

/**
 * Runs of pages that are not all zero, as [first page, count] with `firstPage` added. An
 * untouched page of anonymous memory reads as zero, and so does a page the guest zeroed: both are
 * holes in the file and zero again after a restore, which is the same thing to the guest.
 */
export function nonZeroRuns(buf: Buffer, firstPage: number): [number, number][] {
  const runs: [number, number][] = [];
  const pages = Math.floor(buf.length / PAGE_SIZE);
  let start = -1;
  for (let p = 0; p < pages; p++) {
    const off = p * PAGE_SIZE;
    if (start < 0 && p % BLOCK_PAGES === 0 && p + BLOCK_PAGES <= pages && buf.compare(ZERO_BLOCK, 0, ZERO_BLOCK.length, off, off + ZERO_BLOCK.length) === 0) {
      p += BLOCK_PAGES - 1;
      continue;
    }
    const zero = buf.compare(ZERO_PAGE, 0, PAGE_SIZE, off, off + PAGE_SIZE) === 0;
    if (!zero && start < 0) start = p;
    else if (zero && start >= 0) {
      runs.push([firstPage + start, p - start]);
      start = -1;
    }
  }
  if (start >= 0) runs.push([firstPage + start, pages - start]);
  return runs;
}

export interface MemoryRegionSource {
  buffer: Buffer;
  /** Byte offset of this region in memory.bin (page aligned). */
  fileOffset: number;
}

/**
 * Write the non-zero pages of each region at their file offsets (positional writes: everything
 * between stays a hole), set the file's length to `totalBytes`. Returns the runs written, their
 * size and the SHA-256 of their bytes in file order.
 */
export async function writeMemory(
  fh: FileHandle,
  regions: readonly MemoryRegionSource[],
  totalBytes: number,
  onProgress?: (doneBytes: number, totalBytes: number) => void,
): Promise<{ runs: [number, number][]; dataBytes: number; sha256: string }> {
  const runs: [number, number][] = [];
  const perRegion = regions.map((r) => ({ r, runs: nonZeroRuns(r.buffer, r.fileOffset / PAGE_SIZE) }));
  let dataBytes = 0;
  for (const x of perRegion) for (const [, n] of x.runs) dataBytes += n * PAGE_SIZE;
  const hash = createHash("sha256");
  let done = 0;
  onProgress?.(0, dataBytes);
  for (const { r, runs: rr } of perRegion) {
    for (const run of rr) {
      runs.push(run);
      let off = (run[0] * PAGE_SIZE) - r.fileOffset;
      let left = run[1] * PAGE_SIZE;
      while (left > 0) {
        const n = Math.min(left, WRITE_CHUNK);
        const view = r.buffer.subarray(off, off + n);
        hash.update(view);
        let written = 0;
        while (written < n) {
          const w = await fh.write(view, written, n - written, r.fileOffset + off + written);
          written += w.bytesWritten;
        }
        off += n;
        left -= n;
        done += n;
        onProgress?.(done, dataBytes);
      }
    }
  }
  await fh.truncate(totalBytes);
  return { runs, dataBytes, sha256: hash.digest("hex") };
}
