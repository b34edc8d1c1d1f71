//! Issue 6, acceptance 1: the CloudFormation template — cfn-lint clean for both network
//! variants, accepted by moto's ValidateTemplate, and with the security properties a
//! review asks for, checked on the template as parsed from the served YAML.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tether_tests::harness::moto::Moto;
use tether_tests::harness::{ControlPlaneOptions, ControlPlaneProc, TenantFixture, init};

/// Parses YAML with PyYAML (as `cfn-lint` does), into JSON.
fn parse_yaml(path: &std::path::Path) -> Value {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(path)
        .output()
        .expect("python3 with PyYAML");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn resources_of<'a>(t: &'a Value, kind: &str) -> Vec<(&'a String, &'a Value)> {
    t["Resources"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, r)| r["Type"] == kind)
        .collect()
}

fn as_list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

/// The properties of acceptance 1, on one parsed template.
fn assert_secure(t: &Value, variant: &str) {
    // No ingress from an address range: only from the stack's own security groups.
    for (name, sg) in resources_of(t, "AWS::EC2::SecurityGroup") {
        let inline = as_list(&sg["Properties"]["SecurityGroupIngress"]);
        assert!(
            inline.is_empty(),
            "{variant}: {name} has inline ingress rules {inline:?}"
        );
    }
    let ingress = resources_of(t, "AWS::EC2::SecurityGroupIngress");
    assert!(!ingress.is_empty());
    for (name, rule) in ingress {
        let p = &rule["Properties"];
        assert!(
            p.get("CidrIp").is_none()
                && p.get("CidrIpv6").is_none()
                && p.get("SourcePrefixListId").is_none(),
            "{variant}: {name} admits an address range: {p}"
        );
        assert!(p["SourceSecurityGroupId"].is_object(), "{variant}: {name}");
    }
    // The token: NoEcho, kept in Secrets Manager, handed to the agent as a secret.
    let token = &t["Parameters"]["EnrollmentToken"];
    assert_eq!(token["NoEcho"], true, "{variant}");
    assert!(
        token.get("Default").is_none(),
        "{variant}: a token has no default"
    );
    let secrets = resources_of(t, "AWS::SecretsManager::Secret");
    assert_eq!(secrets.len(), 1);
    assert_eq!(
        secrets[0].1["Properties"]["SecretString"]["Ref"],
        "EnrollmentToken"
    );
    let text = t.to_string();
    assert_eq!(
        text.matches("{\"Ref\":\"EnrollmentToken\"}").count(),
        1,
        "{variant}: the token is used only by the secret"
    );
    // The agent's role: least privilege.
    let role = &t["Resources"]["AgentRole"]["Properties"];
    let statements: Vec<Value> = role["Policies"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| as_list(&p["PolicyDocument"]["Statement"]))
        .collect();
    assert!(
        role.get("ManagedPolicyArns").is_none(),
        "no broad managed policies"
    );
    for s in &statements {
        assert_eq!(s["Effect"], "Allow");
        for a in as_list(&s["Action"]) {
            let a = a.as_str().unwrap_or_default();
            assert!(!a.contains('*'), "{variant}: wildcard action {a}");
        }
        for r in as_list(&s["Resource"]) {
            assert_ne!(r, "*", "{variant}: {s}");
        }
    }
    let by_sid = |sid: &str| {
        statements
            .iter()
            .find(|s| s["Sid"] == sid)
            .unwrap_or_else(|| panic!("{variant}: statement {sid}"))
            .clone()
    };
    let logs = by_sid("OwnLogGroupOnly");
    assert_eq!(logs["Resource"]["Fn::GetAtt"][0], "AgentLogGroup");
    assert!(!logs.to_string().contains("CreateLogGroup"));
    let secrets = by_sid("TetherSecretsOnly");
    assert_eq!(
        secrets["Condition"]["StringEquals"]["secretsmanager:ResourceTag/tether.io/managed-by"],
        "tether"
    );
    let mentioned: Vec<String> = statements
        .iter()
        .flat_map(|s| as_list(&s["Action"]))
        .filter_map(|a| {
            a.as_str()
                .map(|a| a.split(':').next().unwrap_or("").to_owned())
        })
        .collect();
    for service in &mentioned {
        assert!(
            ["logs", "secretsmanager", "elasticfilesystem"].contains(&service.as_str()),
            "{variant}: unexpected service {service}"
        );
    }
    // The data lake and Glue are Presto's, through its own role, which only the Presto
    // service accounts of this cluster's OIDC issuer can assume.
    let presto = &t["Resources"]["PrestoRole"]["Properties"];
    let presto_statements: Vec<Value> = presto["Policies"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| as_list(&p["PolicyDocument"]["Statement"]))
        .collect();
    for s in &presto_statements {
        for a in as_list(&s["Action"]) {
            let a = a.as_str().unwrap_or_default();
            assert!(
                !a.contains('*'),
                "{variant}: Presto role wildcard action {a}"
            );
            assert!(
                a.starts_with("s3:") || a.starts_with("glue:"),
                "{variant}: Presto role action {a}"
            );
        }
    }
    let objects = presto_statements
        .iter()
        .find(|s| s["Sid"] == "DataLakeObjects")
        .unwrap_or_else(|| panic!("{variant}: Presto role DataLakeObjects"));
    assert!(
        objects["Resource"]
            .to_string()
            .contains("${DataLakeBucket.Arn}/*")
    );
    let glue = presto_statements
        .iter()
        .find(|s| s["Sid"] == "GlueCatalog")
        .unwrap_or_else(|| panic!("{variant}: Presto role GlueCatalog"));
    assert!(
        as_list(&glue["Resource"]).iter().all(|r| r
            .to_string()
            .contains(":glue:${AWS::Region}:${AWS::AccountId}:")),
        "{variant}: Glue scoped to this account and region: {glue}"
    );
    let trust_text = presto["AssumeRolePolicyDocument"]["Fn::Sub"][0]
        .as_str()
        .unwrap_or_else(|| panic!("{variant}: the Presto trust is one Fn::Sub of JSON text"));
    let trust: Value = serde_json::from_str(trust_text).expect("trust policy JSON");
    let stmt = &trust["Statement"][0];
    assert_eq!(stmt["Action"], "sts:AssumeRoleWithWebIdentity");
    assert_eq!(stmt["Principal"]["Federated"], "${EksOidcProvider}");
    assert_eq!(
        stmt["Condition"]["StringEquals"]["${Issuer}:aud"],
        "sts.amazonaws.com"
    );
    assert_eq!(
        stmt["Condition"]["StringLike"]["${Issuer}:sub"],
        "system:serviceaccount:default:tether-presto-*"
    );
    assert_eq!(
        t["Resources"]["EksOidcProvider"]["Properties"]["Url"]["Fn::GetAtt"],
        json!(["EksCluster", "OpenIdConnectIssuerUrl"])
    );
    // What the agent is told: its Presto pods' role, and coordinators through the API
    // server (a Fargate task cannot resolve cluster DNS).
    let env = as_list(
        &t["Resources"]["AgentTask"]["Properties"]["ContainerDefinitions"][0]["Environment"],
    );
    let var = |name: &str| {
        env.iter()
            .find(|e| e["Name"] == name)
            .map(|e| e["Value"].clone())
    };
    assert_eq!(var("TETHER_COORDINATOR_ACCESS"), Some(json!("api-proxy")));
    assert_eq!(
        var("TETHER_PRESTO_ROLE_ARN"),
        Some(json!({"Fn::GetAtt": ["PrestoRole", "Arn"]}))
    );
    // The built-in metastore's database: encrypted, private, its password RDS's own in
    // Secrets Manager, reachable on 5432 from the EKS cluster's security group only; the
    // agent may read exactly that secret and is told where the database is.
    let db = &t["Resources"]["MetastoreDb"]["Properties"];
    assert_eq!(db["Engine"], "postgres");
    assert_eq!(db["StorageEncrypted"], true, "{variant}");
    assert_eq!(db["PubliclyAccessible"], false, "{variant}");
    assert_eq!(db["ManageMasterUserPassword"], true, "{variant}");
    assert!(
        db.get("MasterUserPassword").is_none(),
        "no password in the template"
    );
    assert_eq!(db["DeletionProtection"], true);
    assert_eq!(t["Resources"]["MetastoreDb"]["DeletionPolicy"], "Snapshot");
    let ingress = &t["Resources"]["MetastoreDbIngressFromCluster"]["Properties"];
    assert_eq!(
        (ingress["FromPort"].clone(), ingress["ToPort"].clone()),
        (json!(5432), json!(5432))
    );
    assert_eq!(
        ingress["SourceSecurityGroupId"],
        json!({"Fn::GetAtt": ["EksCluster", "ClusterSecurityGroupId"]})
    );
    let db_secret = statements
        .iter()
        .find(|s| s["Sid"] == "MetastoreDbSecret")
        .unwrap_or_else(|| panic!("{variant}: MetastoreDbSecret"));
    assert_eq!(
        db_secret["Resource"],
        json!({"Fn::GetAtt": ["MetastoreDb", "MasterUserSecret.SecretArn"]})
    );
    assert!(var("TETHER_METASTORE_DB_ENDPOINT").is_some());
    assert_eq!(
        var("TETHER_METASTORE_DB_SECRET_ARN"),
        Some(json!({"Fn::GetAtt": ["MetastoreDb", "MasterUserSecret.SecretArn"]}))
    );
    // The worker autoscaler has a metrics source.
    let addons: Vec<String> = resources_of(t, "AWS::EKS::Addon")
        .iter()
        .filter_map(|(_, a)| a["Properties"]["AddonName"].as_str().map(str::to_owned))
        .collect();
    assert!(
        addons.contains(&"metrics-server".to_owned()),
        "{variant}: {addons:?}"
    );
    // Nodes: EKS Auto Mode (compute, block storage and load balancing enabled together, as
    // the EKS API demands), no managed node group; the cluster role may tag sessions.
    let eks = &t["Resources"]["EksCluster"]["Properties"];
    assert_eq!(eks["ComputeConfig"]["Enabled"], true, "{variant}");
    assert_eq!(
        eks["ComputeConfig"]["NodePools"],
        json!(["general-purpose", "system"])
    );
    assert_eq!(
        eks["ComputeConfig"]["NodeRoleArn"],
        json!({"Fn::GetAtt": ["NodeRole", "Arn"]})
    );
    assert_eq!(
        eks["KubernetesNetworkConfig"]["ElasticLoadBalancing"]["Enabled"],
        true
    );
    assert_eq!(eks["StorageConfig"]["BlockStorage"]["Enabled"], true);
    assert!(
        resources_of(t, "AWS::EKS::Nodegroup").is_empty(),
        "{variant}"
    );
    let cluster_trust =
        &t["Resources"]["ClusterRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0];
    assert_eq!(
        cluster_trust["Action"],
        json!(["sts:AssumeRole", "sts:TagSession"])
    );
    let cluster_policies =
        t["Resources"]["ClusterRole"]["Properties"]["ManagedPolicyArns"].to_string();
    for p in [
        "AmazonEKSComputePolicy",
        "AmazonEKSBlockStoragePolicy",
        "AmazonEKSLoadBalancingPolicy",
        "AmazonEKSNetworkingPolicy",
    ] {
        assert!(
            cluster_policies.contains(p),
            "{variant}: cluster role lacks {p}"
        );
    }
    // The bucket: encrypted, no public access, TLS only.
    let b = &t["Resources"]["DataLakeBucket"]["Properties"];
    assert!(b["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"].is_string());
    for k in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(
            b["PublicAccessBlockConfiguration"][k], true,
            "{variant}: {k}"
        );
    }
    let policy =
        &t["Resources"]["DataLakeBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(policy["Effect"], "Deny");
    assert_eq!(policy["Condition"]["Bool"]["aws:SecureTransport"], "false");
    // The agent: private subnets, no public address, an EKS access entry for its role.
    let svc = &t["Resources"]["AgentService"]["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"];
    assert_eq!(svc["AssignPublicIp"], "DISABLED");
    let entry = &t["Resources"]["AgentAccessEntry"]["Properties"];
    assert_eq!(entry["PrincipalArn"]["Fn::GetAtt"][0], "AgentRole");
    assert_eq!(
        t["Resources"]["EksCluster"]["Properties"]["ResourcesVpcConfig"]["EndpointPublicAccess"],
        false
    );
    let log_group = &t["Resources"]["AgentLogGroup"]["Properties"];
    assert_eq!(log_group["RetentionInDays"]["Ref"], "LogRetentionDays");
    assert!(t["Outputs"].as_object().is_some_and(|o| o.len() >= 5));
}

/// Resource types moto's CloudFormation does not implement (it skips them, with a warning).
/// The list is exact: a new resource type in the template fails the test until it is
/// either created by moto or added here.
const NOT_IN_MOTO: &[&str] = &[
    "AWS::EC2::SecurityGroupEgress",
    "AWS::EKS::AccessEntry",
    "AWS::EKS::Addon",
    "AWS::EKS::Cluster",
    "AWS::IAM::OIDCProvider",
    "AWS::S3::BucketPolicy",
    "AWS::SecretsManager::Secret",
];

/// The template as moto (5.2) can take it: attributes moto cannot produce are given
/// stand-in values of the right form — those of the resources it skips (the EKS cluster),
/// and those its models lack (`GetAtt` on an EFS file system or access point, an RDS
/// instance's endpoint and managed secret) — and the KMS key's tags are dropped (moto's
/// KMS reads `TagKey`/`TagValue` where CloudFormation has `Key`/`Value`). Nothing else
/// changes.
fn for_moto(t: &Value) -> Value {
    let stand_ins: Vec<((&str, &str), Value)> = vec![
        (
            ("EksCluster", "Endpoint"),
            json!("https://0.gr7.us-east-1.eks.amazonaws.com"),
        ),
        (("EksCluster", "CertificateAuthorityData"), json!("Q0E=")),
        (
            ("EksCluster", "OpenIdConnectIssuerUrl"),
            json!("https://oidc.eks.us-east-1.amazonaws.com/id/0"),
        ),
        // A security group moto knows: the one the stack creates for the EKS API.
        (
            ("EksCluster", "ClusterSecurityGroupId"),
            json!({"Ref": "ClusterSecurityGroup"}),
        ),
        (
            ("StateFileSystem", "Arn"),
            json!("arn:aws:elasticfilesystem:us-east-1:123456789012:file-system/fs-0"),
        ),
        (
            ("StateAccessPoint", "Arn"),
            json!("arn:aws:elasticfilesystem:us-east-1:123456789012:access-point/fsap-0"),
        ),
        (
            ("MetastoreDb", "MasterUserSecret.SecretArn"),
            json!("arn:aws:secretsmanager:us-east-1:123456789012:secret:rds-0"),
        ),
        (
            ("MetastoreDb", "Endpoint.Address"),
            json!("db.0.us-east-1.rds.amazonaws.com"),
        ),
        (("MetastoreDb", "Endpoint.Port"), json!("5432")),
    ];
    fn walk(v: &Value, subst: &[((&str, &str), Value)]) -> Value {
        match v {
            Value::Object(o) => {
                if let Some(Value::Array(a)) = o.get("Fn::GetAtt")
                    && let [Value::String(r), Value::String(at)] = a.as_slice()
                    && let Some((_, val)) = subst.iter().find(|((sr, sa), _)| sr == r && sa == at)
                {
                    return val.clone();
                }
                if let Some(Value::String(body)) = o.get("Fn::Sub") {
                    let mut body = body.clone();
                    for ((r, at), val) in subst {
                        if let Value::String(val) = val {
                            body = body.replace(&format!("${{{r}.{at}}}"), val);
                        }
                    }
                    return json!({"Fn::Sub": body});
                }
                Value::Object(o.iter().map(|(k, x)| (k.clone(), walk(x, subst))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| walk(x, subst)).collect()),
            other => other.clone(),
        }
    }
    let mut out = walk(t, &stand_ins);
    if let Some(p) = out["Resources"]["SecretsKey"]["Properties"].as_object_mut() {
        p.remove("Tags");
    }
    out
}

/// The text between `<tag>` and `</tag>`, each occurrence.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|s| s.split_once(&close).map(|(v, _)| v.to_owned()))
        .collect()
}

/// `CreateStack` in moto, then every resource of a type moto implements must be
/// `CREATE_COMPLETE`, and moto's own APIs must show what the template asked for.
async fn create_stack_in_moto(moto: &Moto, t: &Value, variant: &str) {
    // Each variant on a clean moto (both name their log group after the compute plane).
    reqwest::Client::new()
        .post(format!("{}/moto-api/reset", moto.url))
        .send()
        .await
        .expect("moto reset");
    let stack = format!("tether-{variant}");
    let body = for_moto(t).to_string();
    let mut form: Vec<(String, String)> = vec![
        ("Action".into(), "CreateStack".into()),
        ("Version".into(), "2010-05-15".into()),
        ("StackName".into(), stack.clone()),
        ("TemplateBody".into(), body),
        ("Capabilities.member.1".into(), "CAPABILITY_IAM".into()),
        (
            "Parameters.member.1.ParameterKey".into(),
            "EnrollmentToken".into(),
        ),
        (
            "Parameters.member.1.ParameterValue".into(),
            format!("tether_enroll_{}", "a".repeat(40)),
        ),
    ];
    if variant == "existing" {
        // The customer's VPC and private subnets, made in moto first.
        let ec2 = |f: Vec<(&'static str, String)>| async move {
            let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            moto.query("ec2", &pairs).await
        };
        let (_, vpc) = ec2(vec![
            ("Action", "CreateVpc".into()),
            ("Version", "2016-11-15".into()),
            ("CidrBlock", "10.20.0.0/16".into()),
        ])
        .await;
        let vpc_id = xml_values(&vpc, "vpcId")
            .into_iter()
            .next()
            .expect("vpc id");
        let mut subnets = Vec::new();
        for (i, az) in ["us-east-1a", "us-east-1b"].iter().enumerate() {
            let (_, s) = ec2(vec![
                ("Action", "CreateSubnet".into()),
                ("Version", "2016-11-15".into()),
                ("VpcId", vpc_id.clone()),
                ("CidrBlock", format!("10.20.{i}.0/24")),
                ("AvailabilityZone", (*az).into()),
            ])
            .await;
            subnets.push(
                xml_values(&s, "subnetId")
                    .into_iter()
                    .next()
                    .expect("subnet id"),
            );
        }
        form.push(("Parameters.member.2.ParameterKey".into(), "VpcId".into()));
        form.push(("Parameters.member.2.ParameterValue".into(), vpc_id));
        form.push((
            "Parameters.member.3.ParameterKey".into(),
            "PrivateSubnetIds".into(),
        ));
        form.push((
            "Parameters.member.3.ParameterValue".into(),
            subnets.join(","),
        ));
    }
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (status, xml) = moto.query("cloudformation", &pairs).await;
    assert_eq!(status, 200, "CreateStack {variant}: {xml}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let stack_status = loop {
        let (_, xml) = moto
            .query(
                "cloudformation",
                &[
                    ("Action", "DescribeStacks"),
                    ("Version", "2010-05-15"),
                    ("StackName", &stack),
                ],
            )
            .await;
        let s = xml_values(&xml, "StackStatus")
            .into_iter()
            .next()
            .unwrap_or_default();
        if !s.ends_with("IN_PROGRESS") || std::time::Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    assert_eq!(stack_status, "CREATE_COMPLETE", "{variant}");
    let (_, xml) = moto
        .query(
            "cloudformation",
            &[
                ("Action", "ListStackResources"),
                ("Version", "2010-05-15"),
                ("StackName", &stack),
            ],
        )
        .await;
    let mut physical = std::collections::BTreeMap::new();
    for member in xml.split("<member>").skip(1) {
        let get = |tag| {
            xml_values(member, tag)
                .into_iter()
                .next()
                .unwrap_or_default()
        };
        assert_eq!(
            get("ResourceStatus"),
            "CREATE_COMPLETE",
            "{variant}: {member}"
        );
        physical.insert(get("LogicalResourceId"), get("PhysicalResourceId"));
    }
    let resources = t["Resources"].as_object().expect("resources");
    for (name, r) in resources {
        let kind = r["Type"].as_str().unwrap_or_default();
        assert_eq!(
            physical.contains_key(name),
            !NOT_IN_MOTO.contains(&kind),
            "{variant}: {name} ({kind}) created by moto?"
        );
    }
    assert!(physical.len() >= 20, "{variant}: {physical:?}");
    // What moto made is what the template says: the agent's role and its policy, the
    // log group's retention.
    let agent_role = &physical["AgentRole"];
    let (_, role) = moto
        .query(
            "iam",
            &[
                ("Action", "GetRole"),
                ("Version", "2010-05-08"),
                ("RoleName", agent_role),
            ],
        )
        .await;
    assert!(
        role.contains("ecs-tasks.amazonaws.com"),
        "{variant}: {role}"
    );
    let (_, policy) = moto
        .query(
            "iam",
            &[
                ("Action", "GetRolePolicy"),
                ("Version", "2010-05-08"),
                ("RoleName", agent_role),
                ("PolicyName", "tether-agent"),
            ],
        )
        .await;
    let doc = xml_values(&policy, "PolicyDocument")
        .into_iter()
        .next()
        .unwrap_or_default();
    assert!(
        doc.contains("secretsmanager%3AGetSecretValue")
            || doc.contains("secretsmanager:GetSecretValue"),
        "{variant}: {policy}"
    );
    assert!(
        !doc.contains("s3%3A") && !doc.contains("glue%3A") && !doc.contains("\"s3:"),
        "{variant}: {doc}"
    );
    let groups = moto
        .logs(
            "DescribeLogGroups",
            &json!({"logGroupNamePrefix": "/tether/"}),
        )
        .await;
    assert_eq!(
        groups["logGroups"][0]["retentionInDays"], 30,
        "{variant}: {groups}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudformation_template_lints_validates_and_is_least_privilege() {
    init();
    let moto = Moto::start().await;
    let cp = ControlPlaneProc::start(ControlPlaneOptions::default()).await;
    let api = cp.api();
    let fx = TenantFixture::create(&api, "acme").await;
    let admin = api.as_token(&fx.admin_token);
    let dir = tempfile::tempdir().expect("tempdir");
    for variant in ["new", "existing"] {
        let resp = reqwest::Client::new()
            .get(format!(
                "{}/api/v1/compute-planes/{}/cloudformation?vpc={variant}",
                admin.base(),
                fx.cp_id
            ))
            .bearer_auth(&fx.admin_token)
            .send()
            .await
            .expect("GET template");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/yaml")
        );
        let yaml = resp.text().await.expect("body");
        let path = dir.path().join(format!("{variant}.yaml"));
        std::fs::write(&path, &yaml).expect("write");

        // cfn-lint: exit code 0 means no errors, warnings or informational findings.
        let lint = Command::new("cfn-lint")
            .arg(&path)
            .output()
            .expect("cfn-lint (pip) on PATH");
        assert!(
            lint.status.success(),
            "cfn-lint on the {variant} variant:\n{}{}",
            String::from_utf8_lossy(&lint.stdout),
            String::from_utf8_lossy(&lint.stderr)
        );
        // checkov: no failed check; every skipped one carries its reason in the template.
        let checkov = std::env::var("TETHER_CHECKOV").unwrap_or_else(|_| "checkov".into());
        let out = Command::new(&checkov)
            .args([
                "--framework",
                "cloudformation",
                "--compact",
                "--skip-download",
                "-o",
                "json",
                "-f",
            ])
            .arg(&path)
            .output()
            .unwrap_or_else(|e| {
                panic!("{checkov} (scripts/test installs it in target/checkov-venv): {e}")
            });
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "checkov output is not JSON ({e}):\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let results = &report["results"];
        let failed: Vec<String> = as_list(&results["failed_checks"])
            .iter()
            .map(|c| format!("{} {} ({})", c["check_id"], c["resource"], c["check_name"]))
            .collect();
        assert!(
            failed.is_empty(),
            "checkov on the {variant} variant failed: {failed:#?}"
        );
        assert!(
            as_list(&results["passed_checks"]).len() > 50,
            "checkov ran its checks: {}",
            results["summary"]
        );
        for c in as_list(&results["skipped_checks"]) {
            assert!(
                c["check_result"]["suppress_comment"]
                    .as_str()
                    .is_some_and(|r| r.len() > 20),
                "{variant}: {} skipped without a reason",
                c["check_id"]
            );
        }
        // moto's CloudFormation accepts it.
        let (status, xml) = moto
            .query(
                "cloudformation",
                &[
                    ("Action", "ValidateTemplate"),
                    ("Version", "2010-05-15"),
                    ("TemplateBody", &yaml),
                ],
            )
            .await;
        assert_eq!(status, 200, "ValidateTemplate {variant}: {xml}");
        assert!(xml.contains("<Description>Tether compute plane"), "{xml}");

        let t = parse_yaml(&path);
        create_stack_in_moto(&moto, &t, variant).await;
        assert_secure(&t, variant);
        assert_eq!(
            t["Parameters"]["ComputePlaneId"]["Default"],
            fx.cp_id.as_str()
        );
        assert!(
            t["Parameters"]["ControlPlaneCa"]["Default"]
                .as_str()
                .is_some_and(|c| c.contains("BEGIN CERTIFICATE")),
            "the CA reads back intact"
        );
        let vpcs = resources_of(&t, "AWS::EC2::VPC").len();
        match variant {
            "new" => assert_eq!(vpcs, 1),
            _ => {
                assert_eq!(vpcs, 0);
                assert_eq!(t["Parameters"]["VpcId"]["Type"], "AWS::EC2::VPC::Id");
            }
        }
    }
    // Bad input, another tenant's compute plane.
    let (s, v) = admin
        .get(&format!(
            "/compute-planes/{}/cloudformation?vpc=maybe",
            fx.cp_id
        ))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let other = TenantFixture::create(&api, "globex").await;
    let (s, _) = api
        .as_token(&other.admin_token)
        .get(&format!("/compute-planes/{}/cloudformation", fx.cp_id))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// Every `TETHER_*` variable the install artefacts set is one the agent reads.
fn agent_env_names() -> Vec<String> {
    let help = Command::new(tether_tests::harness::bin_path("tether-agent"))
        .args(["run", "--help"])
        .output()
        .expect("tether-agent run --help");
    String::from_utf8_lossy(&help.stdout)
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("TETHER_"))
        .map(str::to_owned)
        .collect()
}

fn tether_vars(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("TETHER_"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_artefacts_set_only_what_the_agent_reads() {
    init();
    let known = agent_env_names();
    assert!(known.contains(&"TETHER_CA_PEM".to_owned()), "{known:?}");
    // The CloudFormation template.
    let cp = ControlPlaneProc::start(ControlPlaneOptions::default()).await;
    let api = cp.api();
    let fx = TenantFixture::create(&api, "acme").await;
    let (s, _) = api.get(&format!("/compute-planes/{}", fx.cp_id)).await;
    assert_eq!(s, StatusCode::OK);
    let yaml = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/compute-planes/{}/cloudformation",
            api.base(),
            fx.cp_id
        ))
        .bearer_auth(&fx.admin_token)
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    // The Kubernetes manifests.
    let manifests_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/kubernetes/tether-agent.yaml");
    let manifests = std::fs::read_to_string(&manifests_path).expect("manifests");
    for (what, text) in [("template", &yaml), ("manifests", &manifests)] {
        for var in tether_vars(text) {
            assert!(
                known.contains(&var),
                "{what} sets {var}, which the agent does not read"
            );
        }
    }

    // The manifests: namespaced permissions only, covering what the agent renders and reads.
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(&manifests_path)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert!(
        !kinds.contains(&"ClusterRole") && !kinds.contains(&"ClusterRoleBinding"),
        "{kinds:?}"
    );
    let role = docs.iter().find(|d| d["kind"] == "Role").expect("a Role");
    let grants = |resource: &str, verb: &str| {
        role["rules"].as_array().into_iter().flatten().any(|r| {
            r["resources"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == resource))
                && r["verbs"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == verb))
        })
    };
    for (resource, verb) in [
        ("configmaps", "patch"),
        ("services", "patch"),
        ("serviceaccounts", "patch"),
        ("deployments", "patch"),
        ("horizontalpodautoscalers", "patch"),
        ("poddisruptionbudgets", "delete"),
        ("pods", "watch"),
        ("pods/log", "get"),
        ("secrets", "patch"),
        ("secrets", "delete"),
        ("services/proxy", "get"),
        ("networkpolicies", "patch"),
        ("networkpolicies", "list"),
    ] {
        assert!(
            grants(resource, verb),
            "the Role must grant {verb} on {resource}"
        );
    }
    // What `tether-agent doctor` checks by SelfSubjectAccessReview is exactly what the Role
    // grants: every permission it asks for is granted, by group and object name.
    let has =
        |a: &serde_json::Value, x: &str| a.as_array().is_some_and(|a| a.iter().any(|v| v == x));
    for (group, resource, verbs, name) in tether_agent::doctor::PERMISSIONS {
        for verb in *verbs {
            let granted = role["rules"].as_array().into_iter().flatten().any(|r| {
                has(&r["apiGroups"], group)
                    && has(&r["resources"], resource)
                    && has(&r["verbs"], verb)
                    && match name {
                        Some(n) => r["resourceNames"].is_null() || has(&r["resourceNames"], n),
                        None => r["resourceNames"].is_null(),
                    }
            });
            assert!(
                granted,
                "doctor checks {verb} {resource} ({group:?}, {name:?}), which the Role does not grant"
            );
        }
    }
    // The agent reads one Secret, its own Presto CA, by name; no other.
    let secret_reads: Vec<&serde_json::Value> = role["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["resources"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "secrets"))
                && r["verbs"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == "get" || x == "list" || x == "watch"))
        })
        .collect();
    assert_eq!(secret_reads.len(), 1, "{secret_reads:?}");
    assert_eq!(
        secret_reads[0]["resourceNames"],
        serde_json::json!(["tether-presto-ca"]),
        "the agent reads no Secret but its Presto CA"
    );
    let deploy = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("Deployment");
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    let token = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "TETHER_ENROLLMENT_TOKEN")
        .expect("token env");
    assert!(
        token["valueFrom"]["secretKeyRef"].is_object(),
        "the token comes from a Secret"
    );
    assert!(c.get("ports").is_some());
}
