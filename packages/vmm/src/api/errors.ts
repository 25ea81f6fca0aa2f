import { TsvmmError } from "@tsvmm/abi";

export type ApiErrorCode =
  /** The socket path is taken by something that is not a stale socket, or cannot be bound. */
  | "API_LISTEN_FAILED"
  /** No server answers at the path. */
  | "API_CONNECT_FAILED"
  /** A line that is not a request: not JSON, unknown op, a missing argument. */
  | "API_BAD_REQUEST"
  /** The server closed the connection before answering. */
  | "API_CLOSED"
  /** The server answered with an error (its code is in the message). */
  | "API_REQUEST_FAILED";

export class ApiError extends TsvmmError<ApiErrorCode> {}
