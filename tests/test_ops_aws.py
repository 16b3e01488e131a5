"""ops/aws: the IAM policies and the GitHub OIDC trust policies keep their least-privilege promises."""

from __future__ import annotations

import configparser
import json
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
AWS = REPO / "ops" / "aws"
WRITES = ("Put", "Delete", "Upload", "Complete", "Initiate", "Create", "Update")
OIDC = "token.actions.githubusercontent.com"


def load(name: str) -> dict:
    return json.loads((AWS / name).read_text())


def statements(policy: dict) -> list[dict]:
    assert policy["Version"] == "2012-10-17"
    return policy["Statement"]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def allowed(policy: dict) -> dict[str, list[str]]:
    """{action: [resources]} over the Allow statements."""
    out: dict[str, list[str]] = {}
    for st in statements(policy):
        assert st["Effect"] == "Allow" and "NotAction" not in st and "NotResource" not in st, st
        for action in as_list(st["Action"]):
            out.setdefault(action, []).extend(as_list(st["Resource"]))
    return out


def dvc_remote() -> tuple[str, str]:
    config = configparser.ConfigParser()
    config.read(REPO / ".dvc" / "config")
    url = config["'remote \"storage\"'"]["url"]  # DVC quotes the section name
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return bucket, prefix


@pytest.mark.parametrize("name", sorted(p.name for p in AWS.glob("*policy*.json")))
def test_no_wildcard_action_and_no_star_resource_on_a_write(name):
    for action, resources in allowed(load(name)).items():
        assert "*" not in action, f"{name}: wildcard action {action}"
        if any(w in action.split(":")[1] for w in WRITES):
            assert all("*" != r and not r.endswith(":*") for r in resources), f"{name}: {action} on {resources}"


def test_dvc_policy_lists_the_remote_prefix_and_reads_writes_objects_under_it():
    bucket, prefix = dvc_remote()
    policy = load("dvc-bucket-policy.json")
    grants = allowed(policy)
    assert grants["s3:PutObject"] == [f"arn:aws:s3:::{bucket}/{prefix}/*"]
    assert f"arn:aws:s3:::{bucket}/{prefix}/*" in grants["s3:GetObject"]
    assert "s3:DeleteObject" not in grants  # the DVC cache is append-only from CI: `dvc gc` is a human's call
    lists = [st for st in statements(policy) if st["Action"] == ["s3:ListBucket"]
             and st["Resource"] == f"arn:aws:s3:::{bucket}"]
    assert lists and set(lists[0]["Condition"]["StringLike"]["s3:prefix"]) == {prefix, f"{prefix}/*"}
    # the production profile's upstream prefix is readable, never writable
    source = yaml.safe_load((REPO / "params.production.yaml").read_text())["fetch"]["source"]
    up_bucket, _, up_prefix = source.removeprefix("s3://").partition("/")
    assert f"arn:aws:s3:::{up_bucket}/{up_prefix}/*" in grants["s3:GetObject"]
    assert not any(up_bucket in r for r in grants["s3:PutObject"])


def test_deploy_role_reads_the_models_and_pushes_only_the_embed_repository():
    read = allowed(load("dvc-read-policy.json"))
    assert set(read) == {"s3:ListBucket", "s3:GetObject"}
    ecr = allowed(load("ecr-push-policy.json"))
    assert ecr["ecr:GetAuthorizationToken"] == ["*"]  # AWS defines no resource for it; it grants no push
    assert {"ecr:PutImage", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload"} <= set(ecr)
    assert all(r == ecr["ecr:PutImage"][0] and r.endswith(":repository/reprolab-embed")
               for a, rs in ecr.items() if a != "ecr:GetAuthorizationToken" for r in rs)


@pytest.mark.parametrize("name,sub", [("github-oidc-trust-retrain.json", "repo:OWNER/reprolab:ref:refs/heads/main"),
                                      ("github-oidc-trust-deploy.json", "repo:OWNER/reprolab:environment:production")])
def test_oidc_trust_names_github_the_audience_and_one_subject(name, sub):
    (st,) = statements(load(name))
    assert st["Effect"] == "Allow" and st["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert st["Principal"]["Federated"].endswith(f":oidc-provider/{OIDC}")
    cond = st["Condition"]
    assert set(cond) == {"StringEquals"}, "a StringLike on sub would let other branches or repositories in"
    assert cond["StringEquals"][f"{OIDC}:aud"] == "sts.amazonaws.com"
    assert cond["StringEquals"][f"{OIDC}:sub"] == sub and "*" not in sub
