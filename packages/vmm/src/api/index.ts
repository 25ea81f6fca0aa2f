export { ApiClient } from "./client.js";
export { ApiError, type ApiErrorCode } from "./errors.js";
export { API_MAX_LINE, API_OPS, type ApiOp, type ApiRequest, type ApiResponse, type ApiStatus } from "./protocol.js";
export { ApiServer } from "./server.js";
