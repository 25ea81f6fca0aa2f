import { TsvmmError } from "@tsvmm/abi";

/**
 * Why a virtqueue refused what the driver put in it. Every one of these is a driver bug (or a
 * hostile driver); the transport answers each by setting DEVICE_NEEDS_RESET.
 */
export type VirtqueueErrorCode =
  | "VIRTQ_NOT_READY"
  | "VIRTQ_INVALID_SIZE"
  | "VIRTQ_MISALIGNED"
  | "VIRTQ_RING_OUT_OF_RANGE"
  | "VIRTQ_AVAIL_INDEX_JUMP"
  | "VIRTQ_HEAD_OUT_OF_RANGE"
  | "VIRTQ_NEXT_OUT_OF_RANGE"
  | "VIRTQ_CHAIN_TOO_LONG"
  | "VIRTQ_BUFFER_OUT_OF_RANGE"
  | "VIRTQ_CHAIN_TOO_BIG"
  | "VIRTQ_CHAIN_SHORT"
  | "VIRTQ_READABLE_AFTER_WRITABLE"
  | "VIRTQ_INDIRECT_NOT_NEGOTIATED"
  | "VIRTQ_NESTED_INDIRECT"
  | "VIRTQ_INDIRECT_WITH_NEXT"
  | "VIRTQ_INDIRECT_BAD_LENGTH"
  | "VIRTQ_INDIRECT_IN_CHAIN"
  | "VIRTQ_USED_OVERFLOW"
  | "VIRTQ_BAD_STATE";

export class VirtqueueError extends TsvmmError<VirtqueueErrorCode> {
  /** Queue index, when the queue knows it. */
  readonly queue: number | undefined;
  constructor(code: VirtqueueErrorCode, message: string, queue?: number, options?: { cause?: unknown }) {
    super(code, message, options);
    this.queue = queue;
  }
}

export type VirtioTransportErrorCode =
  | "VIRTIO_FEATURES_REFUSED"
  | "VIRTIO_NOTIFY_BEFORE_DRIVER_OK"
  | "VIRTIO_NOTIFY_BAD_QUEUE"
  | "VIRTIO_BAD_REGISTER_ACCESS"
  | "VIRTIO_BAD_STATE";

/** The driver broke the transport's protocol (what it wrote, or when). */
export class VirtioTransportError extends TsvmmError<VirtioTransportErrorCode> {}

export type VirtioDeviceErrorCode =
  | "VIRTIO_DEVICE_BAD_REQUEST"
  | "VIRTIO_DEVICE_BAD_CONFIG"
  | "VIRTIO_DEVICE_BAD_STATE"
  | "VIRTIO_DEVICE_BACKEND"
  | "VIRTIO_DEVICE_INTERNAL";

/**
 * A device-level failure. `VIRTIO_DEVICE_INTERNAL` wraps an exception that was not one of ours
 * (a bug in a device model or a backend): the transport still contains it.
 */
export class VirtioDeviceError extends TsvmmError<VirtioDeviceErrorCode> {}
