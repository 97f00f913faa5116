// Writes that survive a crash and a power loss: the new content goes to a temporary file, which is fsynced, renamed
// over the target (atomic: readers see the old or the new file, never a mix), and the target's directory is fsynced
// so that the rename itself is on disk (rename(2) and fsync(2) man pages; the ext4/XFS "replace via rename" rule).

import { randomBytes } from 'node:crypto';
import { open, rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** Replaces `path` with `text` atomically and durably; the temporary file is made in `tmpDir` (same file system). */
export async function writeDurably(tmpDir: string, path: string, text: string): Promise<void> {
  const temporary = join(tmpDir, `${process.pid}-${randomBytes(6).toString('hex')}`);
  const file = await open(temporary, 'w', 0o644);
  try {
    await file.writeFile(text);
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(temporary, path);
  await syncDirectory(dirname(path));
}

/** fsync(2) on a directory: its entries (a rename into it, an unlink) reach the disk. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
