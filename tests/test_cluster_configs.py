"""The cluster launcher configs pass Ray's own validation and keep the cluster private."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.autoscaler.tags import TAG_RAY_CLUSTER_NAME

CLUSTER = Path(__file__).resolve().parents[1] / "cluster"
STACK = CLUSTER / "iam" / "gpu-stack.yaml"  # the security group and instance profiles of gpu.yaml
BUCKET, SSH_CIDR = "my-runs", "203.0.113.7/32"


def load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def resolve(node, params: dict):
    """CloudFormation's Ref, Fn::Sub and Fn::GetAtt, evaluated with `params`; a reference to a
    resource becomes "<Name>" or "<Name.Attribute>"."""
    if isinstance(node, list):
        return [resolve(item, params) for item in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Ref"}:
        return params.get(node["Ref"], f"<{node['Ref']}>")
    if set(node) == {"Fn::GetAtt"}:
        return "<{}.{}>".format(*node["Fn::GetAtt"])
    if set(node) == {"Fn::Sub"}:
        return re.sub(r"\$\{([^}]+)\}", lambda m: str(params.get(m[1], f"<{m[1]}>")), node["Fn::Sub"])
    return {key: resolve(value, params) for key, value in node.items()}


def stack_resources() -> dict:
    """The stack's resources as deployed with the defaults, BUCKET and SSH_CIDR, in us-west-2."""
    template = yaml.safe_load(STACK.read_text())
    params = {name: (p["Default"].split(",") if p["Type"] == "CommaDelimitedList" else p["Default"])
              for name, p in template["Parameters"].items() if "Default" in p}
    params |= {"RunsBucket": BUCKET, "SshCidr": SSH_CIDR, "VpcId": "vpc-1",
               "AWS::Region": "us-west-2", "AWS::AccountId": "123456789012"}
    return resolve(template["Resources"], params)


def role_statements(resources: dict, role: str) -> list[dict]:
    props = resources[role]["Properties"]
    managed = [resources[ref.strip("<>")] for ref in props.get("ManagedPolicyArns", [])]  # KeyError: not ours
    docs = [m["Properties"]["PolicyDocument"] for m in managed]
    docs += [p["PolicyDocument"] for p in props.get("Policies", [])]
    return [s for doc in docs for s in doc["Statement"]]


def grants(statements: list[dict]) -> dict[str, set[str]]:
    """action -> the resources it is allowed on."""
    out: dict[str, set[str]] = {}
    for s in statements:
        assert s["Effect"] == "Allow"
        for action in as_list(s["Action"]):
            out.setdefault(action, set()).update(as_list(s["Resource"]))
    return out


@pytest.mark.parametrize("name", ["gpu.yaml", "local.yaml"])
def test_ray_accepts_the_config(name):
    validate_config(prepare_config(load(name)))


@pytest.mark.parametrize("name", ["gpu.yaml", "local.yaml"])
def test_the_dashboard_stays_private(name):
    text = (CLUSTER / name).read_text()
    head = " ".join(load(name)["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in text


def test_the_gpu_cluster_runs_the_pinned_ray_with_gpu_workers():
    cfg = load("gpu.yaml")
    assert cfg["docker"]["image"] == f"rayproject/ray:{ray.__version__}-py311-gpu"
    assert cfg["provider"]["type"] == "aws"
    worker = cfg["available_node_types"]["gpu_worker"]
    assert worker["min_workers"] == 0 and worker["max_workers"] > 0 and worker["node_config"]["InstanceType"][0] == "g"
    assert any("pip install" in c and "/home/ray/rpgan" in c for c in cfg["setup_commands"])


def test_validation_rejects_a_broken_config():
    cfg = load("gpu.yaml")
    cfg["available_node_types"]["gpu_worker"]["min_workers"] = "many"
    with pytest.raises(Exception, match="min_workers|many"):
        validate_config(prepare_config(cfg))


def test_the_gpu_nodes_join_the_stacks_security_group_not_rays_default():
    # For a node type without SecurityGroupIds Ray creates a group that admits SSH from every
    # address; provider.security_group's IpPermissions are added to that rule, not put instead.
    cfg = load("gpu.yaml")
    groups = [t["node_config"].get("SecurityGroupIds") for t in cfg["available_node_types"].values()]
    assert all(groups) and all(g == groups[0] for g in groups)
    assert "security_group" not in cfg["provider"]
    outputs = yaml.safe_load(STACK.read_text())["Outputs"]
    assert outputs["SecurityGroupId"]["Value"] == {"Fn::GetAtt": ["ClusterSecurityGroup", "GroupId"]}


def test_ssh_is_admitted_only_from_the_cidr_the_user_sets():
    template = yaml.safe_load(STACK.read_text())
    cidr = template["Parameters"]["SshCidr"]
    assert "Default" not in cidr  # the user must give one
    allowed = re.compile(cidr["AllowedPattern"])
    assert allowed.match(SSH_CIDR) and allowed.match("10.0.0.0/16")
    assert not any(allowed.match(c) for c in ["0.0.0.0/0", "0.0.0.0/1", "10.0.0.0/4", "203.0.113.7", "::/0"])
    assert "0.0.0.0" not in STACK.read_text()
    resources = stack_resources()
    group = "<ClusterSecurityGroup.GroupId>"
    rules = resources["ClusterSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    rules += [r["Properties"] for r in resources.values() if r["Type"] == "AWS::EC2::SecurityGroupIngress"]
    from_outside = [r for r in rules if "SourceSecurityGroupId" not in r]
    assert [(r["IpProtocol"], r["FromPort"], r["ToPort"], r["CidrIp"]) for r in from_outside] == [
        ("tcp", 22, 22, SSH_CIDR)
    ]
    inside = [r for r in rules if "SourceSecurityGroupId" in r]
    assert inside and all(r["SourceSecurityGroupId"] == group and r["GroupId"] == group for r in inside)
    assert not any(r["Type"] == "AWS::EC2::SecurityGroupEgress" for r in resources.values())


def test_head_and_workers_get_their_own_instance_profile():
    cfg = load("gpu.yaml")
    template = yaml.safe_load(STACK.read_text())
    assert template["Parameters"]["ClusterName"]["Default"] == cfg["cluster_name"]
    resources = stack_resources()
    roles = {r["Properties"]["InstanceProfileName"]: r["Properties"]["Roles"]
             for r in resources.values() if r["Type"] == "AWS::IAM::InstanceProfile"}
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]["node_config"]["IamInstanceProfile"]["Name"]
    worker = types["gpu_worker"]["node_config"]["IamInstanceProfile"]["Name"]
    assert roles == {head: ["<HeadRole>"], worker: ["<WorkerRole>"]}
    allowed_types = template["Parameters"]["WorkerInstanceTypes"]["Default"].split(",")
    assert types["gpu_worker"]["node_config"]["InstanceType"] in allowed_types


def test_the_profiles_may_use_the_runs_bucket_and_nothing_else_in_s3():
    resources = stack_resources()
    bucket, objects = f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"
    expected = {"s3:ListBucket": {bucket}, "s3:GetObject": {objects}, "s3:PutObject": {objects},
                "s3:DeleteObject": {objects}, "s3:AbortMultipartUpload": {objects}}
    for role in ("HeadRole", "WorkerRole"):
        granted = grants(role_statements(resources, role))
        assert not any(a == "*" or a.endswith(":*") for a in granted)  # no s3:*, ec2:*, iam:*
        assert {a: r for a, r in granted.items() if a.startswith("s3:")} == expected
        assert all(a.startswith("ec2:Describe") for a, r in granted.items() if "*" in r)
    assert set(grants(role_statements(resources, "WorkerRole"))) == set(expected)


def test_the_head_may_launch_and_end_only_this_clusters_workers():
    cfg = load("gpu.yaml")
    resources = stack_resources()
    statements = [s for s in role_statements(resources, "HeadRole") if not as_list(s["Action"])[0].startswith("s3:")]
    granted = grants(statements)
    assert set(granted) == {"ec2:Describe*", "ec2:RunInstances", "ec2:CreateTags", "ec2:TerminateInstances",
                            "iam:PassRole"}  # cache_stopped_nodes: false, so no Stop/StartInstances
    assert cfg["provider"]["cache_stopped_nodes"] is False
    assert granted["iam:PassRole"] == {"<WorkerRole.Arn>"}
    instances = "arn:aws:ec2:us-west-2:123456789012:instance/*"
    assert granted["ec2:TerminateInstances"] == granted["ec2:CreateTags"] == {instances}
    groups = [r for r in granted["ec2:RunInstances"] if ":security-group/" in r]
    assert groups == ["arn:aws:ec2:us-west-2:123456789012:security-group/<ClusterSecurityGroup.GroupId>"]
    ours = {f"aws:ResourceTag/{TAG_RAY_CLUSTER_NAME}": cfg["cluster_name"]}
    worker_type = cfg["available_node_types"]["gpu_worker"]["node_config"]["InstanceType"]
    for s in statements:
        actions, condition = as_list(s["Action"]), s.get("Condition", {}).get("StringEquals", {})
        if "ec2:TerminateInstances" in actions:
            assert condition == ours
        if "ec2:CreateTags" in actions:
            assert condition in (ours, {"ec2:CreateAction": "RunInstances"})
        if "iam:PassRole" in actions:
            assert condition == {"iam:PassedToService": "ec2.amazonaws.com"}
        if "ec2:RunInstances" in actions and instances in as_list(s["Resource"]):
            assert condition == {f"aws:RequestTag/{TAG_RAY_CLUSTER_NAME}": cfg["cluster_name"],
                                 "ec2:InstanceType": [worker_type]}


def test_the_local_cluster_keeps_ray_off_the_lan():
    cfg = load("local.yaml")
    text = (CLUSTER / "local.yaml").read_text()
    ips = [cfg["provider"]["head_ip"], *cfg["provider"]["worker_ips"]]
    assert f"--node-ip-address={ips[0]}" in " ".join(cfg["head_start_ray_commands"])
    # The firewall recipe in the header admits exactly the cluster's machines.
    assert sorted(re.findall(r"ufw allow from ([0-9.]+)(?: |$)", text, re.M)) == sorted(ips)
    assert "ufw default deny incoming" in text and "port 22" in text


@pytest.mark.parametrize("name", ["gpu.yaml", "local.yaml"])
def test_every_ray_of_the_cluster_asks_for_the_token_that_file_mounts_bring(name):
    """Ray starts with RAY_AUTH_MODE=token on the head and the workers (gpu.yaml's containers get it
    from docker's --env), the head's shells export it for rpgan and `ray job`, and the token file
    `ray get-auth-token --generate` writes is copied to every node."""
    cfg = load(name)
    starts = [c for key in ("head_start_ray_commands", "worker_start_ray_commands") for c in cfg[key]
              if "ray start" in c]
    assert len(starts) == 2 and all("RAY_AUTH_MODE=token" in c for c in starts)
    assert all("OMP_WAIT_POLICY=PASSIVE" in c for c in starts)  # Ray's workers inherit it (docs/design.md)
    if "docker" in cfg:  # drivers and `ray job` in the container too
        assert "--env RAY_AUTH_MODE=token" in cfg["docker"]["run_options"]
    assert any("RAY_AUTH_MODE=token" in c for c in cfg["head_setup_commands"])
    assert "~/.ray/auth_token" in cfg["file_mounts"].values()
    assert any(target.endswith(".ray/auth_token") for target in cfg["file_mounts"])


def test_every_gpu_node_type_says_what_it_holds():
    """rpgan refuses a worker bigger than any node the autoscaler can start: it reads the types here."""
    types = load("gpu.yaml")["available_node_types"]
    assert all(t["resources"].get("CPU") for t in types.values())
    assert types["gpu_worker"]["resources"]["GPU"] == 1
