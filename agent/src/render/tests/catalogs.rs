//! Catalog files, the default Hive catalog, and credentials by reference.

use super::*;

#[test]
fn catalog_configmap_has_exactly_the_attached_catalogs() {
    let r = fixed3();
    let data = data(&r, "analytics-catalog");
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["db.properties", "lake.properties"]
    );
    assert_eq!(
        data["lake.properties"],
        "connector.name=hive-hadoop2\n\
         hive.metastore=glue\n\
         hive.metastore.glue.region=us-east-1\n"
    );
    assert_eq!(
        data["db.properties"],
        "connector.name=mysql\n\
         connection-password=${ENV:CATALOG_DB_PASSWORD}\n\
         connection-url=jdbc:mysql://db.internal:3306\n\
         connection-user=${ENV:CATALOG_DB_USER}\n"
    );
}

#[test]
fn credentials_come_from_the_secret_and_never_appear_in_objects() {
    // The password exists only in the Kubernetes Secret; even a spec that (wrongly)
    // carried it as a property must not get it past the renderer into a ConfigMap
    // under a key Presto reads as the password.
    let mut cats = catalogs();
    if let Some(db) = cats.get_mut("db") {
        db.properties
            .insert("connection-password".into(), PASSWORD.into());
        db.properties
            .insert("connection-user".into(), format!("user-{PASSWORD}"));
    }
    let r = render(&cluster(Workers::Fixed { count: 3 }), &cats);
    let all = serde_json::to_string(&r.objects).expect("serializes");
    assert!(
        !all.contains(PASSWORD),
        "a password leaked into the objects"
    );

    // Coordinator and workers carry the attached catalogs' variables (both load the
    // catalogs, and the coordinator asks a JDBC source for its metadata), required.
    for (deployment, expected, optional) in [
        (
            "analytics-coordinator",
            &["CATALOG_DB_PASSWORD", "CATALOG_DB_USER"][..],
            false,
        ),
        (
            "analytics-worker",
            &["CATALOG_DB_PASSWORD", "CATALOG_DB_USER"][..],
            false,
        ),
    ] {
        let env = container(find(&r, "Deployment", deployment))["env"]
            .as_array()
            .expect("env");
        let by_name: BTreeMap<&str, &Value> = env
            .iter()
            .map(|e| (e["name"].as_str().unwrap_or_default(), e))
            .collect();
        assert_eq!(
            by_name.keys().copied().collect::<Vec<_>>(),
            expected,
            "{deployment}"
        );
        for (var, key) in [
            ("CATALOG_DB_USER", "username"),
            ("CATALOG_DB_PASSWORD", "password"),
        ] {
            let e = by_name[var];
            assert!(e.get("value").is_none(), "{deployment} {var} is literal");
            let mut expected_ref = serde_json::json!({"name": "mysql-creds", "key": key});
            if optional {
                expected_ref["optional"] = Value::Bool(true);
            }
            assert_eq!(
                e["valueFrom"]["secretKeyRef"], expected_ref,
                "{deployment} {var}"
            );
        }
    }
}

#[test]
fn secrets_manager_credentials_use_the_synced_secret() {
    let mut cats = catalogs();
    cats.insert(
        "warehouse-db".into(),
        catalog(
            Connector::Postgresql,
            &[("connection-url", "jdbc:postgresql://pg:5432/wh")],
            Some("arn:aws:secretsmanager:us-east-1:111122223333:secret:wh-AbCd"),
        ),
    );
    let spec = ClusterSpec {
        catalogs: vec!["warehouse-db".into()],
        ..cluster(Workers::Fixed { count: 1 })
    };
    let r = render(&spec, &cats);
    let env = &container(find(&r, "Deployment", "analytics-worker"))["env"];
    assert_eq!(env[0]["name"], "CATALOG_WAREHOUSE_DB_USER");
    assert_eq!(
        env[0]["valueFrom"]["secretKeyRef"]["name"],
        "tether-catalog-warehouse-db"
    );
    assert!(
        data(&r, "analytics-catalog")["warehouse-db.properties"]
            .as_str()
            .is_some_and(
                |f| f.contains("connection-password=${ENV:CATALOG_WAREHOUSE_DB_PASSWORD}\n")
            )
    );
}

#[test]
fn built_in_metastore_serves_hive_catalogs() {
    let mut spec = cluster(Workers::Fixed { count: 2 });
    spec.hive_metastore = Some(HiveMetastore {
        enabled: true,
        warehouse: "s3://bucket/warehouse".into(),
    });
    let mut cats = catalogs();
    cats.insert("raw".into(), catalog(Connector::Hive, &[], None));
    spec.catalogs.push("raw".into());
    let r = render(&spec, &cats);
    assert_eq!(
        kinds_and_names(&r),
        pairs(&[
            ("ServiceAccount", "tether-presto-analytics"),
            ("ConfigMap", "analytics-coordinator"),
            ("ConfigMap", "analytics-worker"),
            ("ConfigMap", "analytics-catalog"),
            ("Service", "analytics"),
            ("ConfigMap", "analytics-hive-metastore"),
            ("Service", "analytics-hive-metastore"),
            ("Deployment", "analytics-hive-metastore"),
            ("Deployment", "analytics-coordinator"),
            ("Deployment", "analytics-worker"),
            ("PodDisruptionBudget", "analytics-worker"),
        ])
    );
    let d = data(&r, "analytics-catalog");
    assert_eq!(
        d.keys().collect::<Vec<_>>(),
        [
            "db.properties",
            "hive.properties",
            "lake.properties",
            "raw.properties"
        ]
    );
    let uri = "hive.metastore.uri=thrift://analytics-hive-metastore:9083\n";
    assert_eq!(
        d["hive.properties"],
        format!("connector.name=hive-hadoop2\n{uri}")
    );
    assert_eq!(
        d["raw.properties"],
        format!("connector.name=hive-hadoop2\n{uri}")
    );
    // Glue catalogs keep Glue.
    assert!(
        !d["lake.properties"]
            .as_str()
            .unwrap_or_default()
            .contains("thrift")
    );

    let ms = find(&r, "Deployment", "analytics-hive-metastore");
    let c = container(ms);
    assert_eq!(c["image"], "apache/hive:4.0.0");
    let env = c["env"].as_array().expect("env");
    assert!(
        env.iter()
            .any(|e| e["name"] == "SERVICE_NAME" && e["value"] == "metastore")
    );
    assert!(env.iter().any(|e| e["name"] == "SERVICE_OPTS"
        && e["value"] == "-Dhive.metastore.warehouse.dir=s3a://bucket/warehouse"));
    // Hadoop's S3A uses the pod's web identity (the Presto role), from core-site.xml.
    assert!(
        env.iter()
            .any(|e| e["name"] == "HIVE_CUSTOM_CONF_DIR" && e["value"] == "/opt/hive/custom-conf")
    );
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/opt/hive/custom-conf");
    let core = data(&r, "analytics-hive-metastore")["core-site.xml"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        core.contains("<name>fs.s3a.aws.credentials.provider</name>")
            && core.contains("com.amazonaws.auth.WebIdentityTokenCredentialsProvider,"),
        "{core}"
    );
    assert_eq!(
        ms["spec"]["template"]["spec"]["serviceAccountName"],
        "tether-presto-analytics"
    );
    let svc = find(&r, "Service", "analytics-hive-metastore");
    assert_eq!(svc["spec"]["ports"][0]["port"], 9083);
    assert_eq!(
        svc["spec"]["selector"],
        ms["spec"]["selector"]["matchLabels"]
    );

    // A catalog named `hive` replaces the default; an explicit URI is kept.
    let mut cats = catalogs();
    cats.insert(
        "hive".into(),
        catalog(
            Connector::Hive,
            &[("hive.metastore.uri", "thrift://hms:9083")],
            None,
        ),
    );
    spec.catalogs = vec!["hive".into()];
    let r = render(&spec, &cats);
    assert_eq!(
        data(&r, "analytics-catalog")["hive.properties"],
        "connector.name=hive-hadoop2\nhive.metastore.uri=thrift://hms:9083\n"
    );

    // Without the built-in metastore nothing is added or defaulted.
    spec.hive_metastore = None;
    spec.catalogs = vec!["raw".into()];
    let mut cats = catalogs();
    cats.insert("raw".into(), catalog(Connector::Hive, &[], None));
    let r = render(&spec, &cats);
    let d = data(&r, "analytics-catalog");
    assert_eq!(d.keys().collect::<Vec<_>>(), ["raw.properties"]);
    assert_eq!(d["raw.properties"], "connector.name=hive-hadoop2\n");
}

#[test]
fn catalog_values_cannot_inject_keys() {
    let mut cats = catalogs();
    cats.insert(
        "lake".into(),
        catalog(
            Connector::Hive,
            &[
                ("hive.s3.endpoint", "http://s3\nconnector.name=jmx\\"),
                (
                    "hive.storage-format",
                    "ORC\r\nhive.metastore.uri=thrift://evil:9083",
                ),
                ("connector.name", "jmx"),
            ],
            None,
        ),
    );
    let r = render(&cluster(Workers::Fixed { count: 1 }), &cats);
    let file = data(&r, "analytics-catalog")["lake.properties"]
        .as_str()
        .expect("file")
        .to_owned();
    let keys: Vec<String> = config::tests::load(&file)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        ["connector.name", "hive.s3.endpoint", "hive.storage-format"],
        "{file}"
    );
    assert!(file.starts_with("connector.name=hive-hadoop2\n"), "{file}");
}

#[test]
fn the_metastore_keeps_its_tables_in_the_install_database() {
    let mut spec = cluster(Workers::Fixed { count: 2 });
    spec.hive_metastore = Some(HiveMetastore {
        enabled: true,
        warehouse: "s3://bucket/warehouse".into(),
    });
    let mut ctx = super::ctx();
    ctx.metastore_db = Some(crate::render::MetastoreDb {
        endpoint: "tether-db.example.rds.amazonaws.com:5432".into(),
        version: "v-9".into(),
    });
    let r = crate::render::render_cluster("analytics", &spec, &catalogs(), &ctx);
    let ms = find(&r, "Deployment", "analytics-hive-metastore");
    let pod = &ms["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let env = c["env"].as_array().expect("env");
    let var = |n: &str| {
        env.iter()
            .find(|e| e["name"] == n)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(var("DB_DRIVER")["value"], "postgres");
    // The connection and its password come from the Secret's hive-site.xml, mounted with
    // core-site.xml; neither the environment nor the options carry a credential.
    let sources = &pod["volumes"][0]["projected"]["sources"];
    assert_eq!(sources[1]["secret"]["name"], "tether-metastore-db");
    assert_eq!(sources[1]["secret"]["items"][0]["key"], "hive-site.xml");
    let all_env = serde_json::to_string(env).unwrap_or_default();
    assert!(
        !all_env.contains("ConnectionPassword") && !all_env.contains("tether-metastore-db"),
        "{all_env}"
    );
    // The JDBC driver from Presto's own image, mounted into Hive's lib.
    assert_eq!(pod["initContainers"][0]["image"], "prestodb/presto:0.293");
    assert!(c["volumeMounts"].as_array().is_some_and(|m| {
        m.iter()
            .any(|m| m["mountPath"] == "/opt/hive/lib/postgresql.jar")
    }));
    assert_eq!(
        ms["spec"]["template"]["metadata"]["annotations"]["tether.io/metastore-db-version"], "v-9",
        "a rotation restarts the metastore"
    );
    assert!(
        !serde_json::to_string(&r.objects)
            .unwrap_or_default()
            .contains(PASSWORD)
    );
}

#[test]
fn the_metastore_database_secret_carries_an_escaped_hive_site() {
    use base64::Engine as _;
    let ctx = super::ctx();
    let s = crate::render::objects::metastore_db_secret(
        &ctx,
        "db.example:5432",
        "hive",
        "p<&>\"'$\\w",
        "v-1",
    );
    let site = base64::engine::general_purpose::STANDARD
        .decode(s["data"]["hive-site.xml"].as_str().unwrap_or_default())
        .expect("base64");
    let site = String::from_utf8(site).expect("utf-8");
    assert!(
        site.contains("<value>jdbc:postgresql://db.example:5432/metastore?sslmode=require</value>"),
        "{site}"
    );
    assert!(
        site.contains("<value>p&lt;&amp;&gt;&quot;&apos;$\\w</value>"),
        "{site}"
    );
    assert_eq!(
        s["metadata"]["annotations"]["tether.io/secret-version"],
        "v-1"
    );
}
