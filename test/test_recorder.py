from edgeml_ros.msg import InferenceResult
from mcap.reader import make_reader

from edgeml_ros.bringup.recorder import McapRecorder, message_definition


def test_definitions_carry_their_dependencies_once():
    text = message_definition("edgeml_ros/msg/InferenceResult")
    assert text.startswith("# ") or "frame_seq" in text.split("=" * 80)[0]
    assert (
        text.count("MSG: std_msgs/Header") == 1 and text.count("MSG: builtin_interfaces/Time") == 1
    )


def test_recorded_messages_read_back(tmp_path):
    recorder = McapRecorder(tmp_path / "t.mcap")
    for seq in range(3):
        recorder.write("perception/result", InferenceResult(frame_seq=seq), 1_000 + seq)
    recorder.close()
    with open(tmp_path / "t.mcap", "rb") as f:
        messages = list(make_reader(f).iter_messages())
    assert [m.log_time for _, _, m in messages] == [1000, 1001, 1002]
    assert messages[0][0].name == "edgeml_ros/msg/InferenceResult"
    assert messages[0][0].encoding == "ros2msg" and messages[0][1].message_encoding == "cdr"
