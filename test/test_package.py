"""The package as ROS sees it: package.xml, setup.py, launch file, interfaces, layering."""
from __future__ import annotations

import ast
import py_compile
from pathlib import Path

import pytest
from catkin_pkg.package import parse_package

REPO = Path(__file__).resolve().parents[1]


def _setup_call() -> dict:
    """The keyword arguments of setup() in setup.py, read without running it."""
    tree = ast.parse((REPO / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    return {kw.arg: kw.value for kw in call.keywords}


def _console_scripts() -> dict[str, str]:
    entry_points = ast.literal_eval(_setup_call()["entry_points"])
    return dict(s.replace(" ", "").split("=") for s in entry_points["console_scripts"])


def test_package_xml_is_format_3_and_names_the_interfaces():
    pkg = parse_package(str(REPO / "package.xml"))
    assert pkg.package_format == 3 and pkg.name == "langx_ros"
    pkg.validate()
    names = {d.name for d in pkg.exec_depends + pkg.build_depends}
    assert {"rclpy", "sensor_msgs", "langx_interfaces", "diagnostic_msgs", "visualization_msgs"} <= names
    assert pkg.get_build_type() == "ament_python"
    iface = parse_package(str(REPO / "msg" / "package.xml"))
    iface.validate()
    assert iface.name == "langx_interfaces" and "rosidl_interface_packages" in {g.name for g in iface.member_of_groups}


def test_setup_py_installs_resource_marker_launch_and_config():
    kwargs = _setup_call()
    data_files = ast.unparse(kwargs["data_files"])
    assert "share/ament_index/resource_index/packages" in data_files and "resource/" in data_files
    assert "launch/*.launch.py" in data_files and "config/*.yaml" in data_files
    assert (REPO / "resource" / "langx_ros").is_file()
    scripts = _console_scripts()
    assert scripts["langx_node"] == "langx_ros.ros.node:main"
    for target in scripts.values():
        module, func = target.split(":")
        mod = __import__(module, fromlist=[func])
        assert callable(getattr(mod, func)), target


def test_launch_file_compiles_and_names_what_exists(tmp_path):
    """launch/launch_ros are not installable here: check what can be checked without them."""
    path = REPO / "launch" / "langx.launch.py"
    py_compile.compile(str(path), cfile=str(tmp_path / "l.pyc"), doraise=True)
    tree = ast.parse(path.read_text())
    node_call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "Node")
    kw = {k.arg: k.value for k in node_call.keywords}
    assert ast.literal_eval(kw["package"]) == parse_package(str(REPO / "package.xml")).name
    assert ast.literal_eval(kw["executable"]) in _console_scripts()
    literals = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert {"config", "langx.yaml"} <= literals and (REPO / "config" / "langx.yaml").is_file()
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)


def test_interfaces_are_built_and_importable():
    from langx_interfaces.action import Reconstruct
    from langx_interfaces.msg import NodeStatus, ObjectMatch
    from langx_interfaces.srv import QueryObjects

    req = QueryObjects.Request()
    assert {"queries", "threshold", "view", "return_masks"} <= set(req.get_fields_and_field_types())
    res_fields = QueryObjects.Response.get_fields_and_field_types()
    assert res_fields["matches"] == "sequence<langx_interfaces/ObjectMatch>"
    m = ObjectMatch.get_fields_and_field_types()
    assert m["cloud"] == "sensor_msgs/PointCloud2" and m["mask"] == "sensor_msgs/Image"
    assert m["centroid"] == "geometry_msgs/Point" and m["box_size"] == "geometry_msgs/Vector3"
    assert m["obb_pose"] == "geometry_msgs/Pose" and m["obb_size"] == "geometry_msgs/Vector3"
    assert {"stage", "progress"} <= set(Reconstruct.Feedback.get_fields_and_field_types())
    assert {"success", "message", "num_gaussians", "total_seconds"} <= set(Reconstruct.Result.get_fields_and_field_types())
    assert NodeStatus.STATE_READY != NodeStatus.STATE_WAITING_FOR_INPUT


def test_every_interface_field_is_documented():
    """Each field has an inline comment or sits in a paragraph that opens with a comment."""
    for f in sorted((REPO / "msg").glob("*/*.*")):
        if f.suffix not in (".msg", ".srv", ".action"):
            continue
        paragraph_documented = False
        for line in f.read_text().splitlines():
            s = line.strip()
            if not s or s == "---":
                paragraph_documented = False
                continue
            if s.startswith("#"):
                paragraph_documented = True
                continue
            assert paragraph_documented or "#" in s, f"{f.name}: field '{s}' is undocumented"


@pytest.mark.parametrize("path", sorted((REPO / "langx_ros" / "core").rglob("*.py")), ids=lambda p: p.name)
def test_core_never_imports_ros(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for n in names:
            root = n.split(".")[0]
            assert root not in {"rclpy", "sensor_msgs", "std_msgs", "geometry_msgs", "langx_interfaces"}, (
                f"{path.name} imports {n}: core must stay ROS-free"
            )
            assert not n.startswith("langx_ros.ros"), f"{path.name} imports the ROS layer"


def test_rviz_config_shows_the_node_outputs():
    import yaml

    cfg = yaml.safe_load((REPO / "config" / "langx.rviz").read_text())
    displays = cfg["Visualization Manager"]["Displays"]
    topics = {d["Topic"]["Value"] for d in displays if "Topic" in d}
    assert {"/langx_node/field/cloud", "/langx_node/query/cloud", "/langx_node/query/markers",
            "/langx_node/query/mask", "/langx_node/query/relevancy", "/camera/image"} <= topics
    assert cfg["Visualization Manager"]["Global Options"]["Fixed Frame"] == "map"
