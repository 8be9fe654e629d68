"""The wire contract (Avro), the policy tables and the site registry of zhichao.

``encode_*``/``decode_*`` work on schemaless Avro bodies; ``*_wire`` variants add the Confluent
framing (magic byte 0 + 4-byte big-endian schema id from ``schema_ids.yaml``).
"""

from schemas.codec import (
    CODECS,
    Codec,
    DecodeError,
    EncodeError,
    SchemaError,
    codec_for_id,
    decode_any_wire,
    wire_schema_id,
)

WIM_PASSAGE = CODECS["zhichao.WimPassage"]
WIM_VEHICLE = CODECS["zhichao.WimVehicle"]
CAMERA_READ = CODECS["zhichao.CameraRead"]
MEASURED_VEHICLE = CODECS["zhichao.MeasuredVehicle"]
VERDICT = CODECS["zhichao.Verdict"]
ALERT = CODECS["zhichao.Alert"]
DISPATCH_ORDER = CODECS["zhichao.DispatchOrder"]
DISPATCH_FEEDBACK = CODECS["zhichao.DispatchFeedback"]
DEVICE_HEARTBEAT = CODECS["zhichao.DeviceHeartbeat"]
KPI_SNAPSHOT = CODECS["zhichao.KpiSnapshot"]
DEAD_LETTER = CODECS["zhichao.DeadLetter"]
BLACKLIST_UPDATE = CODECS["zhichao.BlacklistUpdate"]
VEHICLE_BATCH = CODECS["zhichao.VehicleBatch"]
VERDICT_BATCH = CODECS["zhichao.VerdictBatch"]

encode_wim_passage, decode_wim_passage = WIM_PASSAGE.encode, WIM_PASSAGE.decode
encode_wim_vehicle, decode_wim_vehicle = WIM_VEHICLE.encode, WIM_VEHICLE.decode
encode_camera_read, decode_camera_read = CAMERA_READ.encode, CAMERA_READ.decode
encode_measured_vehicle, decode_measured_vehicle = MEASURED_VEHICLE.encode, MEASURED_VEHICLE.decode
encode_verdict, decode_verdict = VERDICT.encode, VERDICT.decode
encode_alert, decode_alert = ALERT.encode, ALERT.decode
encode_dispatch_order, decode_dispatch_order = DISPATCH_ORDER.encode, DISPATCH_ORDER.decode
encode_dispatch_feedback, decode_dispatch_feedback = (
    DISPATCH_FEEDBACK.encode,
    DISPATCH_FEEDBACK.decode,
)
encode_device_heartbeat, decode_device_heartbeat = DEVICE_HEARTBEAT.encode, DEVICE_HEARTBEAT.decode
encode_kpi_snapshot, decode_kpi_snapshot = KPI_SNAPSHOT.encode, KPI_SNAPSHOT.decode
encode_dead_letter, decode_dead_letter = DEAD_LETTER.encode, DEAD_LETTER.decode

__all__ = [
    "CODECS",
    "Codec",
    "DecodeError",
    "EncodeError",
    "SchemaError",
    "codec_for_id",
    "decode_any_wire",
    "wire_schema_id",
]

# what each input record is, by its schema: the replay's files and the match agent's intake
KIND_OF_SCHEMA = {
    "zhichao.WimPassage": "passages",
    "zhichao.WimVehicle": "vehicles",
    "zhichao.CameraRead": "reads",
    "zhichao.DeviceHeartbeat": "heartbeats",
}
MATCH_KINDS = ("passages", "vehicles", "reads")  # what the match agent takes
