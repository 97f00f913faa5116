// A lab with a vxtun overlay for one network test: built, handed to the test, and always torn down; on failure
// the agents' logs are printed first.
import { Overlay, type OverlayOptions } from '../../src/lab/overlay';
import { type Lab, createLab } from '../../src/lab/topology';

export async function withOverlay(
  tag: string,
  nodes: number,
  options: OverlayOptions,
  body: (lab: Lab, overlay: Overlay) => Promise<void>,
): Promise<void> {
  const lab = await createLab({ name: `vxt-${tag}${process.pid}`, nodes });
  let overlay: Overlay | undefined;
  try {
    overlay = await Overlay.create(lab, options);
    await body(lab, overlay);
  } catch (err) {
    if (overlay) for (const node of lab.nodes) process.stderr.write(`--- agent log ${node.name}\n${overlay.log(node)}`);
    throw err;
  } finally {
    await overlay?.close();
    await lab.destroy();
  }
}
