//! The CloudFormation template that installs a compute plane into a customer's account:
//! network (a new VPC with private subnets and one NAT gateway, or the customer's VPC and
//! private subnets), an EKS cluster in Auto Mode (EKS provisions the nodes), the data-lake bucket, the log
//! group, the enrollment token as a secret, the agent on ECS Fargate in the private
//! subnets with an EKS access entry, Presto's own IAM role (IRSA) and the metrics-server
//! add-on for the worker autoscaler.
//!
//! Security properties the tests check on the parsed template: no security-group rule
//! admits traffic from outside the VPC (ingress only from other security groups of the
//! stack); the enrollment token is a `NoEcho` parameter kept in Secrets Manager; the
//! agent's role may write only its own log group, read only secrets tagged for Tether,
//! — no S3 object and no Glue action, nothing the agent's code does not call (a test derives
//! both lists); the Presto role
//! alone reads and writes the data-lake bucket and the Glue catalog, trusted only by the
//! Presto service accounts; the bucket is encrypted, blocks public access and refuses
//! plain HTTP.

use serde_json::{Value, json};

/// Where the compute plane's network comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// A new VPC with two private and two public subnets and a NAT gateway.
    NewVpc,
    /// The customer's VPC and private subnets (with egress through their NAT or proxy).
    ExistingVpc,
}

/// What the template is for.
#[derive(Debug, Clone)]
pub struct TemplateInput {
    /// Compute plane id.
    pub compute_plane_id: String,
    /// Compute plane name.
    pub compute_plane_name: String,
    /// Default of the `ControlPlaneEndpoint` parameter, e.g. `https://cp.example:8443`.
    pub control_plane_endpoint: String,
    /// The CA certificate agents trust (PEM).
    pub ca_pem: String,
    /// Default agent image.
    pub agent_image: String,
    /// Network variant.
    pub network: Network,
}

/// The namespace the Presto clusters run in on a stack-created EKS cluster: one that
/// exists from the start, because the agent's access entry is scoped to it and a
/// namespace-scoped grant cannot create a namespace.
pub const PRESTO_NAMESPACE: &str = "default";

/// The tag that marks secrets the agent may read.
pub const SECRET_TAG: &str = "tether.io/managed-by";

fn r(name: &str) -> Value {
    json!({"Ref": name})
}

fn att(resource: &str, attribute: &str) -> Value {
    json!({"Fn::GetAtt": [resource, attribute]})
}

fn sub(s: &str) -> Value {
    json!({"Fn::Sub": s})
}

fn tags(name: &str) -> Value {
    json!([
        {"Key": "Name", "Value": sub(&format!("tether-${{ComputePlaneId}}-{name}"))},
        {"Key": SECRET_TAG, "Value": "tether"},
    ])
}

fn assume(service: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    })
}

/// The prefix of the service accounts the Presto role trusts: the agent names the
/// service account of each cluster's pods `tether-presto-<cluster>`.
pub const PRESTO_SERVICE_ACCOUNT_PREFIX: &str = "tether-presto-";

/// The Presto role's trust: web identities of the EKS cluster's OIDC issuer, audience STS,
/// subject a `tether-presto-*` service account in the Presto namespace. The condition keys
/// must contain the issuer's host, and a map key cannot be an intrinsic function, so the
/// whole document is one `Fn::Sub` of its JSON text (the property accepts a string).
fn presto_trust() -> Value {
    let doc = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "PrestoServiceAccounts",
            "Effect": "Allow",
            "Principal": {"Federated": "${EksOidcProvider}"},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {"${Issuer}:aud": "sts.amazonaws.com"},
                "StringLike": {"${Issuer}:sub": format!(
                    "system:serviceaccount:{PRESTO_NAMESPACE}:{PRESTO_SERVICE_ACCOUNT_PREFIX}*")},
            },
        }],
    });
    json!({"Fn::Sub": [
        doc.to_string(),
        // `https://oidc.eks.…/id/…` without the scheme.
        {"Issuer": {"Fn::Select": [1, {"Fn::Split": ["//", att("EksCluster", "OpenIdConnectIssuerUrl")]}]}},
    ]})
}

/// What Presto's Hive connector does with the data lake and the Glue Data Catalog
/// (`GlueHiveMetastore` and the S3 file system of prestodb's presto-hive), scoped to the
/// stack's bucket and this account's and region's catalog.
fn presto_statements() -> Value {
    let glue = |what: &str| {
        sub(&format!(
            "arn:${{AWS::Partition}}:glue:${{AWS::Region}}:${{AWS::AccountId}}:{what}"
        ))
    };
    json!([
        {"Sid": "DataLakeBucket", "Effect": "Allow",
         "Action": ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
         "Resource": att("DataLakeBucket", "Arn")},
        {"Sid": "DataLakeObjects", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                    "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
         "Resource": sub("${DataLakeBucket.Arn}/*")},
        {"Sid": "GlueCatalog", "Effect": "Allow",
         "Action": ["glue:GetDatabase", "glue:GetDatabases", "glue:CreateDatabase",
                    "glue:UpdateDatabase", "glue:DeleteDatabase",
                    "glue:GetTable", "glue:GetTables", "glue:CreateTable", "glue:UpdateTable",
                    "glue:DeleteTable",
                    "glue:GetPartition", "glue:GetPartitions", "glue:BatchGetPartition",
                    "glue:BatchCreatePartition", "glue:UpdatePartition", "glue:DeletePartition"],
         "Resource": [glue("catalog"), glue("database/*"), glue("table/*/*"),
                      glue("userDefinedFunction/*/*")]},
    ])
}

/// `Metadata` skipping checkov checks on a resource, each with its reason.
fn checkov_skip(checks: &[(&str, &str)]) -> Value {
    json!({"checkov": {"skip": checks.iter().map(|(id, why)| json!({"id": id, "comment": why})).collect::<Vec<_>>()}})
}

fn private_subnets(network: Network) -> Value {
    match network {
        Network::NewVpc => json!([r("PrivateSubnet1"), r("PrivateSubnet2")]),
        Network::ExistingVpc => r("PrivateSubnetIds"),
    }
}

fn vpc(network: Network) -> Value {
    match network {
        Network::NewVpc => r("Vpc"),
        Network::ExistingVpc => r("VpcId"),
    }
}

fn parameters(input: &TemplateInput) -> Value {
    let mut p = json!({
        "ControlPlaneEndpoint": {
            "Type": "String",
            "Description": "The Tether control plane's gRPC endpoint the agent dials out to (HTTPS, port 8443 by default).",
            "Default": input.control_plane_endpoint,
            "AllowedPattern": "^https://[A-Za-z0-9.-]+(:[0-9]+)?$",
        },
        "ControlPlaneCa": {
            "Type": "String",
            "Description": "PEM of the CA the agent trusts for the control plane (from the dashboard).",
            "Default": input.ca_pem,
        },
        "ComputePlaneId": {
            "Type": "String",
            "Description": format!("Tether compute plane id ({}).", input.compute_plane_name),
            "Default": input.compute_plane_id,
            "AllowedPattern": "^[a-z0-9-]{1,64}$",
        },
        "EnrollmentToken": {
            "Type": "String",
            "Description": "One-time enrollment token from the dashboard; stored in Secrets Manager.",
            "NoEcho": true,
            "MinLength": 16,
        },
        "AgentImage": {
            "Type": "String",
            "Description": "Container image of the Tether agent.",
            "Default": input.agent_image,
        },
        "KubernetesVersion": {
            "Type": "String",
            "Description": "EKS Kubernetes version.",
            "Default": "1.33",
        },
        "MetastoreDbInstanceClass": {
            "Type": "String",
            "Description": "RDS instance class of the PostgreSQL database that keeps the built-in Hive metastore's tables.",
            "Default": "db.t4g.small",
        },
        "MetastoreDbMultiAz": {
            "Type": "String",
            "Description": "Run the metastore database in two availability zones.",
            "Default": "true",
            "AllowedValues": ["true", "false"],
        },
        "LogRetentionDays": {
            "Type": "Number",
            "Description": "Days CloudWatch keeps the agent's and Presto's logs.",
            "Default": 30,
            "AllowedValues": [7, 14, 30, 60, 90, 180, 365],
        },
    });
    let extra = match input.network {
        Network::NewVpc => json!({
            "VpcCidr": {"Type": "String", "Description": "CIDR of the new VPC.", "Default": "10.64.0.0/16",
                        "AllowedPattern": "^[0-9.]+/[0-9]+$"},
            "PublicSubnet1Cidr": {"Type": "String", "Description": "Public subnet (NAT gateway) in the first AZ.", "Default": "10.64.0.0/24"},
            "PublicSubnet2Cidr": {"Type": "String", "Description": "Public subnet in the second AZ.", "Default": "10.64.1.0/24"},
            "PrivateSubnet1Cidr": {"Type": "String", "Description": "Private subnet in the first AZ.", "Default": "10.64.16.0/20"},
            "PrivateSubnet2Cidr": {"Type": "String", "Description": "Private subnet in the second AZ.", "Default": "10.64.32.0/20"},
        }),
        Network::ExistingVpc => json!({
            "VpcId": {"Type": "AWS::EC2::VPC::Id", "Description": "The VPC to install into."},
            "PrivateSubnetIds": {"Type": "List<AWS::EC2::Subnet::Id>",
                                 "Description": "Two or more private subnets in different AZs, with outbound access (NAT or proxy)."},
        }),
    };
    if let (Some(p), Some(e)) = (p.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    p
}

fn network_resources() -> Value {
    let subnet = |cidr: &str, az: u32, public: bool| {
        json!({
            "Type": "AWS::EC2::Subnet",
            "Properties": {
                "VpcId": r("Vpc"),
                "CidrBlock": r(cidr),
                "AvailabilityZone": {"Fn::Select": [az, {"Fn::GetAZs": ""}]},
                "MapPublicIpOnLaunch": false,
                "Tags": tags(if public { "public" } else { "private" }),
            },
        })
    };
    let assoc = |subnet: &str, table: &str| {
        json!({"Type": "AWS::EC2::SubnetRouteTableAssociation",
               "Properties": {"SubnetId": r(subnet), "RouteTableId": r(table)}})
    };
    json!({
        "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {
            "CidrBlock": r("VpcCidr"), "EnableDnsSupport": true, "EnableDnsHostnames": true, "Tags": tags("vpc")}},
        "InternetGateway": {"Type": "AWS::EC2::InternetGateway", "Properties": {"Tags": tags("igw")}},
        "InternetGatewayAttachment": {"Type": "AWS::EC2::VPCGatewayAttachment",
            "Properties": {"VpcId": r("Vpc"), "InternetGatewayId": r("InternetGateway")}},
        "PublicSubnet1": subnet("PublicSubnet1Cidr", 0, true),
        "PublicSubnet2": subnet("PublicSubnet2Cidr", 1, true),
        "PrivateSubnet1": subnet("PrivateSubnet1Cidr", 0, false),
        "PrivateSubnet2": subnet("PrivateSubnet2Cidr", 1, false),
        "PublicRouteTable": {"Type": "AWS::EC2::RouteTable", "Properties": {"VpcId": r("Vpc"), "Tags": tags("public")}},
        "PublicDefaultRoute": {"Type": "AWS::EC2::Route", "DependsOn": "InternetGatewayAttachment", "Properties": {
            "RouteTableId": r("PublicRouteTable"), "DestinationCidrBlock": "0.0.0.0/0", "GatewayId": r("InternetGateway")}},
        "PublicSubnet1Routes": assoc("PublicSubnet1", "PublicRouteTable"),
        "PublicSubnet2Routes": assoc("PublicSubnet2", "PublicRouteTable"),
        "NatAddress": {"Type": "AWS::EC2::EIP", "DependsOn": "InternetGatewayAttachment",
            "Properties": {"Domain": "vpc", "Tags": tags("nat")}},
        "NatGateway": {"Type": "AWS::EC2::NatGateway", "Properties": {
            "AllocationId": att("NatAddress", "AllocationId"), "SubnetId": r("PublicSubnet1"), "Tags": tags("nat")}},
        "PrivateRouteTable": {"Type": "AWS::EC2::RouteTable", "Properties": {"VpcId": r("Vpc"), "Tags": tags("private")}},
        "PrivateDefaultRoute": {"Type": "AWS::EC2::Route", "Properties": {
            "RouteTableId": r("PrivateRouteTable"), "DestinationCidrBlock": "0.0.0.0/0", "NatGatewayId": r("NatGateway")}},
        "PrivateSubnet1Routes": assoc("PrivateSubnet1", "PrivateRouteTable"),
        "PrivateSubnet2Routes": assoc("PrivateSubnet2", "PrivateRouteTable"),
    })
}

fn resources(input: &TemplateInput) -> Value {
    let n = input.network;
    let mut res = json!({
        // --- security groups: no ingress from outside the VPC, only from the stack's own groups
        "AgentSecurityGroup": {"Type": "AWS::EC2::SecurityGroup", "Properties": {
            "GroupDescription": "Tether agent: no inbound; outbound HTTPS to the control plane and AWS APIs",
            "VpcId": vpc(n),
            "SecurityGroupEgress": [
                {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "CidrIp": "0.0.0.0/0",
                 "Description": "HTTPS to AWS APIs and the EKS API"},
                {"IpProtocol": "tcp", "FromPort": 8443, "ToPort": 8443, "CidrIp": "0.0.0.0/0",
                 "Description": "gRPC to the Tether control plane"},
            ],
            "Tags": tags("agent")}},
        "ClusterSecurityGroup": {"Type": "AWS::EC2::SecurityGroup", "Properties": {
            "GroupDescription": "Tether EKS API endpoint: reachable from the agent only",
            "VpcId": vpc(n), "Tags": tags("eks")}},
        "ClusterIngressFromAgent": {"Type": "AWS::EC2::SecurityGroupIngress", "Properties": {
            "GroupId": r("ClusterSecurityGroup"), "IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
            "SourceSecurityGroupId": r("AgentSecurityGroup"), "Description": "Kubernetes API from the Tether agent"}},
        "AgentEgressToState": {"Type": "AWS::EC2::SecurityGroupEgress", "Properties": {
            "GroupId": r("AgentSecurityGroup"), "IpProtocol": "tcp", "FromPort": 2049, "ToPort": 2049,
            "DestinationSecurityGroupId": r("StateSecurityGroup"), "Description": "NFS to the agent's state file system"}},
        "StateSecurityGroup": {"Type": "AWS::EC2::SecurityGroup", "Properties": {
            "GroupDescription": "Tether agent state file system: NFS from the agent only",
            "VpcId": vpc(n), "Tags": tags("state")}},
        "StateIngressFromAgent": {"Type": "AWS::EC2::SecurityGroupIngress", "Properties": {
            "GroupId": r("StateSecurityGroup"), "IpProtocol": "tcp", "FromPort": 2049, "ToPort": 2049,
            "SourceSecurityGroupId": r("AgentSecurityGroup"), "Description": "NFS from the Tether agent"}},

        // --- EKS
        // Envelope encryption of the cluster's Secrets (the synced catalog credentials) with
        // a key of the customer's account, rotated yearly.
        "SecretsKey": {"Type": "AWS::KMS::Key", "Properties": {
            "Description": "Tether EKS cluster: envelope encryption of Kubernetes Secrets",
            "EnableKeyRotation": true,
            "KeyPolicy": {"Version": "2012-10-17", "Statement": [{
                "Sid": "AccountAdministersTheKey", "Effect": "Allow",
                "Principal": {"AWS": sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")},
                "Action": "kms:*", "Resource": "*"}]},
            "Tags": tags("eks-secrets")}},
        // EKS Auto Mode: EKS launches, scales and replaces the nodes (its Karpenter, the
        // built-in `general-purpose` NodePool), and runs networking, DNS, block storage and
        // the Pod Identity agent itself. The cluster role then needs the four Auto Mode
        // policies and `sts:TagSession` in its trust
        // (https://docs.aws.amazon.com/eks/latest/userguide/auto-cluster-iam-role.html).
        "ClusterRole": {"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "eks.amazonaws.com"},
                "Action": ["sts:AssumeRole", "sts:TagSession"]}]},
            "ManagedPolicyArns": [
                sub("arn:${AWS::Partition}:iam::aws:policy/AmazonEKSClusterPolicy"),
                sub("arn:${AWS::Partition}:iam::aws:policy/AmazonEKSComputePolicy"),
                sub("arn:${AWS::Partition}:iam::aws:policy/AmazonEKSBlockStoragePolicy"),
                sub("arn:${AWS::Partition}:iam::aws:policy/AmazonEKSLoadBalancingPolicy"),
                sub("arn:${AWS::Partition}:iam::aws:policy/AmazonEKSNetworkingPolicy"),
            ],
            "Policies": [{"PolicyName": "secrets-encryption", "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Sid": "SecretsKey", "Effect": "Allow",
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey", "kms:CreateGrant", "kms:ListGrants"],
                "Resource": att("SecretsKey", "Arn")}]}}],
            "Tags": tags("eks-cluster")}},
        // The Auto Mode nodes' role: the minimal node policy and image pulls; EKS creates
        // its access entry for the built-in node pools
        // (https://docs.aws.amazon.com/eks/latest/userguide/auto-create-node-role.html).
        "NodeRole": {"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": assume("ec2.amazonaws.com"),
            "ManagedPolicyArns": [
                sub("arn:${AWS::Partition}:iam::aws:policy/AmazonEKSWorkerNodeMinimalPolicy"),
                sub("arn:${AWS::Partition}:iam::aws:policy/AmazonEC2ContainerRegistryPullOnly"),
            ],
            "Tags": tags("eks-node")}},
        "EksCluster": {"Type": "AWS::EKS::Cluster", "Properties": {
            "Name": sub("tether-${ComputePlaneId}"),
            "Version": r("KubernetesVersion"),
            "RoleArn": att("ClusterRole", "Arn"),
            "AccessConfig": {"AuthenticationMode": "API"},
            // Auto Mode: compute, block storage and load balancing are enabled together
            // (the API refuses a mix); no self-managed add-ons (vpc-cni, kube-proxy,
            // coredns), Auto Mode runs their equivalents.
            "BootstrapSelfManagedAddons": false,
            "ComputeConfig": {"Enabled": true, "NodePools": ["general-purpose", "system"],
                "NodeRoleArn": att("NodeRole", "Arn")},
            "KubernetesNetworkConfig": {"ElasticLoadBalancing": {"Enabled": true}},
            "StorageConfig": {"BlockStorage": {"Enabled": true}},
            "EncryptionConfig": [{"Provider": {"KeyArn": att("SecretsKey", "Arn")}, "Resources": ["secrets"]}],
            "ResourcesVpcConfig": {
                "SubnetIds": private_subnets(n),
                "SecurityGroupIds": [r("ClusterSecurityGroup")],
                "EndpointPrivateAccess": true,
                "EndpointPublicAccess": false,
            },
            "Logging": {"ClusterLogging": {"EnabledTypes": [{"Type": "api"}, {"Type": "audit"}, {"Type": "authenticator"}]}},
            "Tags": tags("eks")}},

        // --- data lake
        "DataLakeBucket": {"Type": "AWS::S3::Bucket", "DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain",
            "Metadata": checkov_skip(&[("CKV_AWS_18",
                "Server access logs need a second bucket and are best-effort; audit data-lake access with CloudTrail data events, which the account owner configures for the whole account")]),
            "Properties": {
                "BucketEncryption": {"ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}, "BucketKeyEnabled": true}]},
                "PublicAccessBlockConfiguration": {"BlockPublicAcls": true, "BlockPublicPolicy": true,
                    "IgnorePublicAcls": true, "RestrictPublicBuckets": true},
                "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                "VersioningConfiguration": {"Status": "Enabled"},
                "Tags": tags("data-lake")}},
        "DataLakeBucketPolicy": {"Type": "AWS::S3::BucketPolicy", "Properties": {
            "Bucket": r("DataLakeBucket"),
            "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                "Resource": [att("DataLakeBucket", "Arn"), sub("${DataLakeBucket.Arn}/*")],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}}},

        // --- the built-in Hive metastore's database: PostgreSQL in the private subnets,
        // encrypted, reachable only from the EKS cluster's security group, its master
        // password made, kept and rotated by RDS in Secrets Manager.
        "MetastoreDbSecurityGroup": {"Type": "AWS::EC2::SecurityGroup", "Properties": {
            "GroupDescription": "Tether Hive metastore database: PostgreSQL from the EKS cluster security group only",
            "VpcId": vpc(n), "Tags": tags("metastore-db")}},
        "MetastoreDbIngressFromCluster": {"Type": "AWS::EC2::SecurityGroupIngress", "Properties": {
            "GroupId": r("MetastoreDbSecurityGroup"), "IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
            "SourceSecurityGroupId": att("EksCluster", "ClusterSecurityGroupId"),
            "Description": "PostgreSQL from the metastore pods (the EKS cluster security group)"}},
        "MetastoreDbSubnets": {"Type": "AWS::RDS::DBSubnetGroup", "Properties": {
            "DBSubnetGroupDescription": "Tether metastore database: the private subnets",
            "SubnetIds": private_subnets(n), "Tags": tags("metastore-db")}},
        "MetastoreDbMonitoringRole": {"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": assume("monitoring.rds.amazonaws.com"),
            "ManagedPolicyArns": [sub("arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole")],
            "Tags": tags("metastore-db-monitoring")}},
        "MetastoreDb": {"Type": "AWS::RDS::DBInstance", "DeletionPolicy": "Snapshot", "UpdateReplacePolicy": "Snapshot",
            "Metadata": checkov_skip(&[("CKV_AWS_161",
                "The metastore signs in with the RDS-managed password the agent syncs; IAM authentication tokens last 15 minutes and Hive's connection pool cannot renew them")]),
            "Properties": {
                "Engine": "postgres",
                "EngineVersion": "17.5",
                "DBInstanceClass": r("MetastoreDbInstanceClass"),
                "AllocatedStorage": "20",
                "MaxAllocatedStorage": 100,
                "StorageType": "gp3",
                "StorageEncrypted": true,
                "DBName": "metastore",
                "MasterUsername": "hive",
                "ManageMasterUserPassword": true,
                "DBSubnetGroupName": r("MetastoreDbSubnets"),
                "VPCSecurityGroups": [r("MetastoreDbSecurityGroup")],
                "PubliclyAccessible": false,
                "MultiAZ": r("MetastoreDbMultiAz"),
                "BackupRetentionPeriod": 7,
                "DeletionProtection": true,
                "AutoMinorVersionUpgrade": true,
                "CopyTagsToSnapshot": true,
                "EnableCloudwatchLogsExports": ["postgresql", "upgrade"],
                "MonitoringInterval": 60,
                "MonitoringRoleArn": att("MetastoreDbMonitoringRole", "Arn"),
                "Tags": tags("metastore-db")}},

        // --- logs and the enrollment token
        "AgentLogGroup": {"Type": "AWS::Logs::LogGroup", "DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain",
            "Metadata": checkov_skip(&[("CKV_AWS_158",
                "Operational logs with query literals redacted by the agent; CloudWatch Logs encrypts them at rest; a customer key would need a key policy for the regional logs service that the owner may prefer to manage")]),
            "Properties": {"LogGroupName": sub("/tether/${ComputePlaneId}"), "RetentionInDays": r("LogRetentionDays")}},
        "EnrollmentTokenSecret": {"Type": "AWS::SecretsManager::Secret",
            "Metadata": checkov_skip(&[("CKV_AWS_149",
                "A single-use enrollment token that expires within minutes of its creation; encrypted with the account's aws/secretsmanager key")]),
            "Properties": {
            "Description": "Tether agent enrollment token (used once, at first start)",
            "SecretString": r("EnrollmentToken"),
            "Tags": [{"Key": SECRET_TAG, "Value": "tether"}, {"Key": "tether.io/compute-plane", "Value": r("ComputePlaneId")}]}},

        // --- the agent's state (its identity and telemetry spool survive task replacement)
        "StateFileSystem": {"Type": "AWS::EFS::FileSystem", "Properties": {
            "Encrypted": true,
            "FileSystemTags": [{"Key": "Name", "Value": sub("tether-${ComputePlaneId}-agent-state")}]}},
        "StateAccessPoint": {"Type": "AWS::EFS::AccessPoint", "Properties": {
            "FileSystemId": r("StateFileSystem"),
            "PosixUser": {"Uid": "10001", "Gid": "10001"},
            "RootDirectory": {"Path": "/tether-agent",
                "CreationInfo": {"OwnerUid": "10001", "OwnerGid": "10001", "Permissions": "0700"}}}},

        // --- the agent's roles: least privilege
        "AgentExecutionRole": {"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": assume("ecs-tasks.amazonaws.com"),
            "Policies": [{"PolicyName": "agent-task-start", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Sid": "ContainerLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                 "Resource": att("AgentLogGroup", "Arn")},
                {"Sid": "EnrollmentToken", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                 "Resource": r("EnrollmentTokenSecret")},
            ]}}],
            "Tags": tags("agent-execution")}},
        "AgentRole": {"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": assume("ecs-tasks.amazonaws.com"),
            "Policies": [{"PolicyName": "tether-agent", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Sid": "OwnLogGroupOnly", "Effect": "Allow",
                 "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                 "Resource": att("AgentLogGroup", "Arn")},
                {"Sid": "TetherSecretsOnly", "Effect": "Allow",
                 "Action": "secretsmanager:GetSecretValue",
                 "Resource": sub("arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:*"),
                 "Condition": {"StringEquals": {format!("secretsmanager:ResourceTag/{SECRET_TAG}"): "tether"}}},
                {"Sid": "MetastoreDbSecret", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                 "Resource": att("MetastoreDb", "MasterUserSecret.SecretArn")},
                {"Sid": "StateFileSystem", "Effect": "Allow",
                 "Action": ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"],
                 "Resource": att("StateFileSystem", "Arn"),
                 "Condition": {"StringEquals": {"elasticfilesystem:AccessPointArn": att("StateAccessPoint", "Arn")}}},
            ]}}],
            "Tags": tags("agent")}},
        // --- Presto's own AWS identity (IRSA): the data lake and Glue, for the Presto and
        // metastore pods' service accounts only; the agent's role has neither.
        "EksOidcProvider": {"Type": "AWS::IAM::OIDCProvider", "Properties": {
            "Url": att("EksCluster", "OpenIdConnectIssuerUrl"),
            "ClientIdList": ["sts.amazonaws.com"],
            "Tags": tags("eks-oidc")}},
        "PrestoRole": {"Type": "AWS::IAM::Role", "Properties": {
            "Description": "Presto and Hive metastore pods (not the Tether agent): the data-lake bucket and the Glue Data Catalog",
            "AssumeRolePolicyDocument": presto_trust(),
            "Policies": [{"PolicyName": "tether-presto", "PolicyDocument": {"Version": "2012-10-17",
                "Statement": presto_statements()}}],
            "Tags": tags("presto")}},

        // --- metrics for the worker autoscaler (the HPA reads CPU from metrics-server)
        "MetricsServer": {"Type": "AWS::EKS::Addon", "Properties": {
            "ClusterName": r("EksCluster"),
            "AddonName": "metrics-server",
            "ResolveConflicts": "OVERWRITE",
            "Tags": tags("metrics-server")}},

        "AgentAccessEntry": {"Type": "AWS::EKS::AccessEntry", "Properties": {
            "ClusterName": r("EksCluster"),
            "PrincipalArn": att("AgentRole", "Arn"),
            "Type": "STANDARD",
            "AccessPolicies": [{
                "PolicyArn": sub("arn:${AWS::Partition}:eks::aws:cluster-access-policy/AmazonEKSEditPolicy"),
                "AccessScope": {"Type": "namespace", "Namespaces": [PRESTO_NAMESPACE]}}]}},

        // --- the agent on Fargate, in the private subnets, no public address
        "AgentCluster": {"Type": "AWS::ECS::Cluster", "Properties": {
            "ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}], "Tags": tags("agent")}},
        "AgentTask": {"Type": "AWS::ECS::TaskDefinition", "Properties": {
            "Family": sub("tether-agent-${ComputePlaneId}"),
            "RequiresCompatibilities": ["FARGATE"],
            "NetworkMode": "awsvpc",
            "Cpu": "256",
            "Memory": "512",
            "RuntimePlatform": {"OperatingSystemFamily": "LINUX", "CpuArchitecture": "X86_64"},
            "ExecutionRoleArn": att("AgentExecutionRole", "Arn"),
            "TaskRoleArn": att("AgentRole", "Arn"),
            "Volumes": [{"Name": "state", "EFSVolumeConfiguration": {
                "FilesystemId": r("StateFileSystem"), "TransitEncryption": "ENABLED",
                "AuthorizationConfig": {"AccessPointId": r("StateAccessPoint"), "IAM": "ENABLED"}}}],
            "ContainerDefinitions": [{
                "Name": "agent",
                "Image": r("AgentImage"),
                "Essential": true,
                "Command": ["run"],
                "ReadonlyRootFilesystem": true,
                "User": "10001:10001",
                "MountPoints": [{"SourceVolume": "state", "ContainerPath": "/var/lib/tether", "ReadOnly": false}],
                "Environment": [
                    {"Name": "TETHER_CONTROL_PLANE", "Value": r("ControlPlaneEndpoint")},
                    {"Name": "TETHER_CA_PEM", "Value": r("ControlPlaneCa")},
                    {"Name": "TETHER_COMPUTE_PLANE", "Value": r("ComputePlaneId")},
                    {"Name": "TETHER_STATE_DIR", "Value": "/var/lib/tether"},
                    {"Name": "TETHER_NAMESPACE", "Value": PRESTO_NAMESPACE},
                    // Fargate tasks cannot resolve cluster DNS: coordinators through the
                    // API server's service proxy.
                    {"Name": "TETHER_COORDINATOR_ACCESS", "Value": "api-proxy"},
                    // Its security group lets only HTTPS out: JDBC and Thrift sources are
                    // the Presto pods' to reach, not the agent's; Glue and S3 it checks.
                    {"Name": "TETHER_CATALOG_CHECKS", "Value": "aws"},
                    {"Name": "TETHER_PRESTO_ROLE_ARN", "Value": att("PrestoRole", "Arn")},
                    {"Name": "TETHER_METASTORE_DB_ENDPOINT",
                     "Value": sub("${MetastoreDb.Endpoint.Address}:${MetastoreDb.Endpoint.Port}")},
                    {"Name": "TETHER_METASTORE_DB_SECRET_ARN", "Value": att("MetastoreDb", "MasterUserSecret.SecretArn")},
                    {"Name": "TETHER_EKS_CLUSTER", "Value": r("EksCluster")},
                    {"Name": "TETHER_EKS_ENDPOINT", "Value": att("EksCluster", "Endpoint")},
                    {"Name": "TETHER_EKS_CA_DATA", "Value": att("EksCluster", "CertificateAuthorityData")},
                    {"Name": "TETHER_CLOUDWATCH_LOG_GROUP", "Value": r("AgentLogGroup")},
                    {"Name": "TETHER_ACCOUNT_BINDING", "Value": "true"},
                    {"Name": "TETHER_LOG_FORMAT", "Value": "json"},
                ],
                "Secrets": [{"Name": "TETHER_ENROLLMENT_TOKEN", "ValueFrom": r("EnrollmentTokenSecret")}],
                "LogConfiguration": {"LogDriver": "awslogs", "Options": {
                    "awslogs-group": r("AgentLogGroup"), "awslogs-region": r("AWS::Region"),
                    "awslogs-stream-prefix": "agent-container"}},
            }],
            "Tags": tags("agent")}},
        "AgentService": {"Type": "AWS::ECS::Service", "DependsOn": ["AgentAccessEntry"], "Properties": {
            "Cluster": r("AgentCluster"),
            "LaunchType": "FARGATE",
            "DesiredCount": 1,
            "TaskDefinition": r("AgentTask"),
            "DeploymentConfiguration": {"MaximumPercent": 100, "MinimumHealthyPercent": 0},
            "NetworkConfiguration": {"AwsvpcConfiguration": {
                "AssignPublicIp": "DISABLED",
                "Subnets": private_subnets(n),
                "SecurityGroups": [r("AgentSecurityGroup")]}},
            "Tags": tags("agent")}},
    });
    let mounts = match n {
        Network::NewVpc => vec![
            ("StateMountTarget1", r("PrivateSubnet1")),
            ("StateMountTarget2", r("PrivateSubnet2")),
        ],
        Network::ExistingVpc => vec![
            (
                "StateMountTarget1",
                json!({"Fn::Select": [0, r("PrivateSubnetIds")]}),
            ),
            (
                "StateMountTarget2",
                json!({"Fn::Select": [1, r("PrivateSubnetIds")]}),
            ),
        ],
    };
    if let Some(obj) = res.as_object_mut() {
        for (name, subnet) in mounts {
            obj.insert(
                name.into(),
                json!({"Type": "AWS::EFS::MountTarget", "Properties": {
                    "FileSystemId": r("StateFileSystem"), "SubnetId": subnet,
                    "SecurityGroups": [r("StateSecurityGroup")]}}),
            );
        }
        if n == Network::NewVpc
            && let Some(net) = network_resources().as_object()
        {
            obj.extend(net.clone());
        }
        if let Some(svc) = obj.get_mut("AgentService") {
            svc["DependsOn"] =
                json!(["AgentAccessEntry", "StateMountTarget1", "StateMountTarget2"]);
        }
    }
    res
}

fn outputs(n: Network) -> Value {
    let mut o = json!({
        "EksClusterName": {"Description": "EKS cluster running the Presto clusters", "Value": r("EksCluster")},
        "DataLakeBucketName": {"Description": "S3 data-lake bucket", "Value": r("DataLakeBucket")},
        "AgentLogGroupName": {"Description": "CloudWatch log group of the agent and Presto", "Value": r("AgentLogGroup")},
        "AgentRoleArn": {"Description": "IAM role of the agent", "Value": att("AgentRole", "Arn")},
        "PrestoRoleArn": {"Description": "IAM role of the Presto pods (data lake and Glue)", "Value": att("PrestoRole", "Arn")},
        "MetastoreDbEndpoint": {"Description": "PostgreSQL of the built-in Hive metastore", "Value": sub("${MetastoreDb.Endpoint.Address}:${MetastoreDb.Endpoint.Port}")},
        "MetastoreDbSecretArn": {"Description": "Secret (RDS-managed) of the metastore database", "Value": att("MetastoreDb", "MasterUserSecret.SecretArn")},
        "AgentServiceName": {"Description": "ECS service running the agent", "Value": att("AgentService", "Name")},
        "EnrollmentTokenSecretArn": {"Description": "Secret holding the enrollment token", "Value": r("EnrollmentTokenSecret")},
        "AgentSecurityGroupId": {"Description": "Security group of the agent (no inbound rules)", "Value": r("AgentSecurityGroup")},
    });
    if n == Network::NewVpc {
        o["VpcId"] = json!({"Description": "The new VPC", "Value": r("Vpc")});
        o["PrivateSubnetIds"] = json!({"Description": "Private subnets",
            "Value": {"Fn::Join": [",", [r("PrivateSubnet1"), r("PrivateSubnet2")]]}});
    }
    o
}

/// The template for `input`.
pub fn template(input: &TemplateInput) -> Value {
    let network = match input.network {
        Network::NewVpc => "a new VPC with private subnets and a NAT gateway",
        Network::ExistingVpc => "an existing VPC and private subnets",
    };
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!(
            "Tether compute plane {} ({}): EKS for Presto, a data-lake bucket, logs and the Tether agent on ECS Fargate in {network}. The agent only dials out.",
            input.compute_plane_name, input.compute_plane_id
        ),
        "Parameters": parameters(input),
        "Resources": resources(input),
        "Outputs": outputs(input.network),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(network: Network) -> TemplateInput {
        TemplateInput {
            compute_plane_id: "cp-1".into(),
            compute_plane_name: "prod".into(),
            control_plane_endpoint: "https://cp.example:8443".into(),
            ca_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
            agent_image: "public.ecr.aws/tether/agent:0.1.0".into(),
            network,
        }
    }

    /// Every `Fn::GetAtt` target, and every `${Name}` or `${Name.Attribute}` inside an
    /// `Fn::Sub` (whose variables may also come from its own map), names a parameter, a
    /// resource or a pseudo parameter: a typo there deploys and then fails, or — inside the
    /// Presto role's trust, which is JSON text — silently never matches.
    #[test]
    fn every_getatt_and_sub_variable_names_something() {
        fn walk(v: &Value, names: &[String], out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::Array(a)) = m.get("Fn::GetAtt") {
                        let target = a.first().and_then(Value::as_str).unwrap_or("");
                        if !names.iter().any(|n| n == target) {
                            out.push(format!("GetAtt {target}"));
                        }
                    }
                    if let Some(sub) = m.get("Fn::Sub") {
                        let (text, vars): (&str, Vec<String>) = match sub {
                            Value::String(t) => (t, vec![]),
                            Value::Array(a) => (
                                a.first().and_then(Value::as_str).unwrap_or(""),
                                a.get(1)
                                    .and_then(Value::as_object)
                                    .map(|o| o.keys().cloned().collect())
                                    .unwrap_or_default(),
                            ),
                            _ => ("", vec![]),
                        };
                        for part in text.split("${").skip(1) {
                            let var = part.split('}').next().unwrap_or("");
                            let base = var.split('.').next().unwrap_or("");
                            if !(base.starts_with("AWS::")
                                || var.starts_with('!')
                                || names.iter().any(|n| n == base)
                                || vars.iter().any(|n| n == base))
                            {
                                out.push(format!("Sub ${{{var}}}"));
                            }
                        }
                    }
                    for x in m.values() {
                        walk(x, names, out);
                    }
                }
                Value::Array(a) => a.iter().for_each(|x| walk(x, names, out)),
                _ => {}
            }
        }
        for n in [Network::NewVpc, Network::ExistingVpc] {
            let t = template(&input(n));
            let names: Vec<String> = ["Parameters", "Resources"]
                .iter()
                .flat_map(|k| {
                    t[*k]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, _)| k.clone())
                })
                .collect();
            let mut bad = Vec::new();
            walk(&t, &names, &mut bad);
            assert!(bad.is_empty(), "{n:?}: {bad:?}");
            // The trust's variables are filled: the issuer from the map, the provider by name.
            let trust =
                t["Resources"]["PrestoRole"]["Properties"]["AssumeRolePolicyDocument"].to_string();
            assert!(trust.contains("${Issuer}:sub") && trust.contains("${EksOidcProvider}"));
        }
    }

    #[test]
    fn every_ref_names_a_parameter_or_resource() {
        for n in [Network::NewVpc, Network::ExistingVpc] {
            let t = template(&input(n));
            let mut names: Vec<String> = t["Parameters"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k.clone())
                .collect();
            names.extend(
                t["Resources"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k.clone()),
            );
            let text = t.to_string();
            for part in text.split("{\"Ref\":\"").skip(1) {
                let name = part.split('"').next().unwrap_or_default();
                assert!(
                    name.starts_with("AWS::") || names.iter().any(|n| n == name),
                    "{n:?}: Ref {name}"
                );
            }
        }
    }
}
