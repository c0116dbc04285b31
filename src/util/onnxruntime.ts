/**
 * onnxruntime-node, as every module here loads it. Its 1.30 build records telemetry (an empty
 * /tmp/mat-debug-<pid>.log per process, piling up, and a SQLite database and device id under
 * ~/.cache/Microsoft) unless ORT_DISABLE_TELEMETRY is set before the first session is created.
 * A command-line tool should not do that silently, so it is off unless the user set it.
 */
import ort from 'onnxruntime-node';

process.env.ORT_DISABLE_TELEMETRY ??= '1';

export default ort;
