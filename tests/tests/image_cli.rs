//! Whole-program tests of the image verbs: import, images, inspect, history, tag, rmi, prune and
//! the built-in default image, driving the real `nook` binary against a private store.

use nook_tests::{gzip, rootfs_tar, sha256, zstd, Nook};

#[test]
fn default_image_is_busybox_with_applets_and_is_idempotent() {
    let nook = Nook::new();
    let first = nook.ok(&["image", "default"]);
    assert!(
        first.starts_with("Created: busybox:latest sha256:"),
        "{first}"
    );
    let before = nook.snapshot();
    let second = nook.ok(&["image", "default"]);
    assert!(second.starts_with("Up to date: busybox:latest"), "{second}");
    assert_eq!(nook.snapshot(), before, "a second run changes nothing");

    let info = nook.inspect("busybox");
    assert_eq!(info["RepoTags"], serde_json::json!(["busybox:latest"]));
    assert_eq!(info["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(info["Os"], "linux");
    assert_eq!(info["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    // The layer really holds busybox and its applet links.
    let layer = info["Layers"][0]["Digest"].as_str().unwrap();
    let blob = nook
        .root()
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let listing = nook_tests::tool("tar", &["-tvf", blob.to_str().unwrap()]);
    assert!(listing.contains("bin/busybox"), "{listing}");
    assert!(listing.contains("bin/sh link to bin/busybox"), "{listing}");
    assert!(listing.contains("etc/passwd"));
    assert!(listing.contains("drwxrwxrwt"), "/tmp is sticky: {listing}");
}

#[test]
fn import_plain_gzip_zstd_and_stdin() {
    let nook = Nook::new();
    let tar = rootfs_tar("hello\n");
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "plain.tar",
            tar.clone(),
            "application/vnd.oci.image.layer.v1.tar",
        ),
        (
            "layer.tar.gz",
            gzip(&tar),
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
        (
            "layer.tar.zst",
            zstd(&tar),
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
    ];
    for (file, data, media) in &cases {
        let path = dir.path().join(file);
        std::fs::write(&path, data).unwrap();
        let tag = format!("imp:{}", file.replace('.', "-"));
        let id = nook.ok(&["import", path.to_str().unwrap(), &tag]);
        assert!(id.trim().starts_with("sha256:"), "{id}");
        let info = nook.inspect(&tag);
        assert_eq!(info["Id"], id.trim());
        assert_eq!(info["Layers"][0]["MediaType"], *media);
        assert_eq!(info["Layers"][0]["Digest"], sha256(data));
        assert_eq!(info["Layers"][0]["Size"], data.len() as u64);
        // The diff id is the uncompressed tar's digest, whatever the compression.
        assert_eq!(info["RootFS"]["Layers"][0], sha256(&tar));
        assert_eq!(info["Layers"][0]["DiffID"], sha256(&tar));
        // Every blob in the store matches its name.
        let blob = nook
            .root()
            .join("blobs/sha256")
            .join(&sha256(data)["sha256:".len()..]);
        assert_eq!(sha256(&std::fs::read(blob).unwrap()), sha256(data));
    }
    let id = nook.ok_with_input(&["import", "-", "from-stdin"], &gzip(&tar));
    let info = nook.inspect("from-stdin:latest");
    assert_eq!(info["Id"], id.trim());
    assert_eq!(info["Comment"], "Imported from -");
}

#[test]
fn import_applies_changes() {
    let nook = Nook::new();
    let tar = rootfs_tar("x");
    nook.ok_with_input(
        &[
            "import",
            "--change",
            r#"CMD ["/bin/app", "--serve"]"#,
            "-c",
            "ENTRYPOINT /entry.sh",
            "-c",
            "ENV A=1 B=\"two words\"",
            "-c",
            "WORKDIR /srv",
            "-c",
            "USER 1000:1000",
            "-c",
            "LABEL org.example=yes",
            "-c",
            "EXPOSE 8080 53/udp",
            "-c",
            "VOLUME /data",
            "-m",
            "my message",
            "-",
            "changed:1",
        ],
        &tar,
    );
    let c = &nook.inspect("changed:1")["Config"];
    assert_eq!(c["Cmd"], serde_json::json!(["/bin/app", "--serve"]));
    assert_eq!(
        c["Entrypoint"],
        serde_json::json!(["/bin/sh", "-c", "/entry.sh"])
    );
    assert_eq!(c["Env"], serde_json::json!(["A=1", "B=two words"]));
    assert_eq!(c["WorkingDir"], "/srv");
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["Labels"]["org.example"], "yes");
    assert!(c["ExposedPorts"]["8080/tcp"].is_object(), "{c}");
    assert!(c["ExposedPorts"]["53/udp"].is_object(), "{c}");
    assert!(c["Volumes"]["/data"].is_object(), "{c}");
    let history = nook.ok(&["history", "changed:1"]);
    assert!(history.contains("my message"), "{history}");

    let err = nook.fails_with_input(&["import", "-c", "RUN make", "-", "bad"], &tar);
    assert!(err.contains("RUN is not supported"), "{err}");
}

#[test]
fn images_table_json_quiet_and_filter() {
    let nook = Nook::new();
    nook.default_image();
    nook.ok_with_input(&["import", "-", "localhost:5000/app:v1"], &rootfs_tar("a"));
    let table = nook.ok(&["images"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    for column in ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(lines[0].contains(column), "{table}");
    }
    // Newest first: the import comes before busybox (whose date is busybox's).
    assert!(lines[1].starts_with("localhost:5000/app   v1 "), "{table}");
    assert!(lines[2].starts_with("busybox "), "{table}");

    let json = nook.ok(&["images", "--format", "json"]);
    let rows: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    let bb = rows.iter().find(|r| r["Repository"] == "busybox").unwrap();
    assert_eq!(bb["Tag"], "latest");
    let id = nook.inspect("busybox")["Id"].as_str().unwrap().to_string();
    assert_eq!(bb["ID"], id["sha256:".len()..][..12]);

    let quiet = nook.ok(&["images", "-q", "busybox"]);
    assert_eq!(quiet.trim(), &id["sha256:".len()..][..12]);
    let template = nook.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(template.contains("busybox:latest\n"), "{template}");
    assert!(template.contains("localhost:5000/app:v1\n"), "{template}");
    let digests = nook.ok(&["images", "--digests", "--no-trunc"]);
    assert!(digests.contains("DIGEST"), "{digests}");
    assert!(digests.contains(&id), "{digests}");
    assert_eq!(nook.ok(&["images", "nothere"]).lines().count(), 1);
    assert_eq!(nook.ok(&["image", "ls"]), table);
}

#[test]
fn inspect_and_history_show_config_layers_and_sizes() {
    let nook = Nook::new();
    nook.default_image();
    let info = nook.inspect("busybox:latest");
    let layer_size = info["Layers"][0]["Size"].as_u64().unwrap();
    assert!(layer_size > 500_000, "busybox is big: {layer_size}");
    assert!(info["Size"].as_u64().unwrap() > layer_size);
    assert!(info["Manifest"]["Digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(info["RootFS"]["Type"], "layers");
    assert_eq!(
        info["ChainID"], info["RootFS"]["Layers"][0],
        "one layer: chain id = diff id"
    );
    // By id, id prefix and digest reference.
    let id = info["Id"].as_str().unwrap();
    assert_eq!(nook.inspect(id)["Id"], id);
    assert_eq!(nook.inspect(&id[7..15])["Id"], id);
    let manifest = info["Manifest"]["Digest"].as_str().unwrap();
    assert_eq!(nook.inspect(&format!("busybox@{manifest}"))["Id"], id);
    assert_eq!(
        nook.ok(&[
            "inspect",
            "--format",
            "{{.Os}}/{{.Architecture}}",
            "busybox"
        ])
        .trim(),
        format!("linux/{}", info["Architecture"].as_str().unwrap())
    );

    let history = nook.ok(&["history", "busybox"]);
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 2, "{history}");
    assert!(lines[0].starts_with("IMAGE"));
    assert!(lines[1].starts_with(&id[7..19]), "{history}");
    let json = nook.ok(&["history", "--format", "json", "busybox"]);
    let row: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert!(row["Size"].as_str().unwrap().ends_with("MB"), "{row}");
}

#[test]
fn tag_rmi_and_prune() {
    let nook = Nook::new();
    nook.default_image();
    let id = nook.inspect("busybox")["Id"].as_str().unwrap().to_string();
    nook.ok(&["tag", "busybox", "mine:1"]);
    nook.ok(&["tag", &id, "localhost:5000/other"]);
    assert_eq!(nook.inspect("mine:1")["Id"], id);
    assert_eq!(
        nook.inspect("busybox")["RepoTags"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // Removing one of several tags only untags.
    let out = nook.ok(&["rmi", "mine:1"]);
    assert_eq!(out, "Untagged: mine:1\n");
    assert!(nook
        .fails(&["inspect", "mine:1"])
        .contains("No such image: mine:1"));
    // By id with tags in several repositories: refused unless forced.
    let err = nook.fails(&["rmi", &id[7..19]]);
    assert!(err.contains("must be forced"), "{err}");

    // A second image whose tag then moves away becomes dangling; prune removes it.
    nook.ok_with_input(&["import", "-", "temp"], &rootfs_tar("one"));
    nook.ok_with_input(&["import", "-", "temp"], &rootfs_tar("two"));
    let table = nook.ok(&["images"]);
    assert!(table.contains("<none>"), "{table}");
    let blobs_before = nook.snapshot().blobs.len();
    let out = nook.ok(&["image", "prune", "-f"]);
    assert!(out.contains("Total reclaimed space:"), "{out}");
    assert!(!nook.ok(&["images"]).contains("<none>"));
    assert_eq!(nook.snapshot().blobs.len(), blobs_before - 3);

    // Removing the last tags deletes the image and its blobs.
    let out = nook.ok(&["rmi", "-f", "busybox", "localhost:5000/other", "temp"]);
    assert!(out.contains("Untagged: busybox:latest"), "{out}");
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    assert_eq!(nook.ok(&["images", "-q"]), "");
    assert!(
        nook.snapshot().blobs.is_empty(),
        "{:?}",
        nook.snapshot().blobs
    );
}

#[test]
fn errors_name_the_thing_and_exit_125() {
    let nook = Nook::new();
    let err = nook.fails(&["inspect", "nothere"]);
    assert_eq!(err.trim(), "Error: No such image: nothere:latest");
    let err = nook.fails(&["rmi", "nothere:v2"]);
    assert!(err.contains("No such image: nothere:v2"), "{err}");
    let err = nook.fails(&["tag", "nothere", "x"]);
    assert!(err.contains("No such image"), "{err}");
    let err = nook.fails(&["import", "-", "Bad/Name"]);
    assert!(err.contains("must be lowercase"), "{err}");
    let err = nook.fails(&["import", "/does/not/exist.tar", "x"]);
    assert!(err.contains("/does/not/exist.tar"), "{err}");
    let err = nook.fails_with_input(&["import", "-", "x"], &gzip(&rootfs_tar("a"))[..20]);
    assert!(err.contains("gzip"), "{err}");
    let err = nook.fails_with_input(&["import", "-", "x"], b"definitely not a tarball, no way");
    assert!(err.contains("not a tar archive"), "{err}");
    let err = nook.fails(&["images", "--bogus"]);
    assert!(err.contains("--bogus"), "{err}");
    // Usage help is not an error.
    assert!(nook.run(&["images", "--help"]).status.success());
    assert!(nook.snapshot().blobs.is_empty());
    assert!(nook.ok(&["images"]).lines().count() == 1);
}

#[test]
fn a_corrupted_blob_is_reported_not_used() {
    let nook = Nook::new();
    nook.ok_with_input(&["import", "-", "victim"], &rootfs_tar("data"));
    let info = nook.inspect("victim");
    let config = info["Id"].as_str().unwrap();
    let path = nook.root().join("blobs/sha256").join(&config[7..]);
    std::fs::write(&path, b"{}").unwrap();
    let err = nook.fails(&["inspect", "victim"]);
    assert!(err.contains("does not match its digest"), "{err}");
    assert!(err.contains(&config[7..]), "{err}");
}

#[test]
fn images_that_containers_use_are_kept() {
    let nook = Nook::new();
    nook.default_image();
    let id = nook.inspect("busybox")["Id"].as_str().unwrap().to_string();
    let container = nook.ok(&["create", "--name", "user", "busybox", "true"]);
    let container = container.trim();
    let err = nook.fails(&["rmi", "busybox"]);
    assert!(
        err.contains("must force") && err.contains(&container[..12]),
        "{err}"
    );
    let err = nook.fails(&["rmi", &id]);
    assert!(err.contains("stopped container"), "{err}");
    // Forced: untagged, but the image stays for its container, and prune keeps it.
    assert_eq!(
        nook.ok(&["rmi", "-f", "busybox"]),
        "Untagged: busybox:latest\n"
    );
    nook.ok(&["image", "prune", "-f"]);
    assert_eq!(nook.inspect(&id)["Id"], id);
    assert!(nook.ok(&["images"]).contains("<none>"));
    // Once the container is gone, prune removes it.
    nook.ok(&["rm", "user"]);
    nook.ok(&["image", "prune", "-f"]);
    assert!(nook.fails(&["inspect", &id]).contains("No such image"));
    assert!(nook.snapshot().blobs.is_empty());
}

/// No control characters, no bytes that were not UTF-8, and short: a message a terminal shows
/// as it is.
fn assert_readable(err: &str) {
    assert!(
        !err.chars()
            .any(|c| (c.is_control() && c != '\n') || c == char::REPLACEMENT_CHARACTER),
        "raw binary in the message: {err:?}"
    );
    assert!(err.len() < 1000, "{} bytes of message: {err:?}", err.len());
}

#[test]
fn random_bytes_give_a_readable_error() {
    let nook = Nook::new();
    // Random-looking bytes (a fixed xorshift stream): no compression magic, no tar header.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("noise.bin");
    std::fs::write(&path, &noise).unwrap();
    nook.ok(&["images"]);
    let before = nook.snapshot();
    let err = nook.fails(&["import", path.to_str().unwrap(), "noise"]);
    assert!(err.contains("noise.bin is not a tar archive"), "{err}");
    assert_readable(&err);
    let err = nook.fails(&["load", "-i", path.to_str().unwrap()]);
    assert!(err.contains("noise.bin"), "{err}");
    assert_readable(&err);
    let err = nook.fails_with_input(&["load"], &noise);
    assert_readable(&err);
    assert_eq!(nook.snapshot(), before);
}

/// One raw tar entry: name, type, link name, data.
type RawEntry<'a> = (&'a [u8], tar::EntryType, &'a [u8], &'a [u8]);

/// A tar stream of raw entries (name, type, link name, data), written byte for byte so that
/// names the tar crate's writer would refuse (`..`) or that need an extension (long paths, as
/// a PAX `path` record) get in.
fn raw_tar(entries: &[RawEntry<'_>]) -> Vec<u8> {
    let mut out = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in entries {
        if name.len() > 100 {
            let mut record = Vec::new();
            let len = |n: usize| n + 1 + "path=".len() + name.len() + 1;
            // The record's length counts its own digits.
            let mut total = len(1);
            while len(total.to_string().len()) != total {
                total = len(total.to_string().len());
            }
            record.extend_from_slice(format!("{total} path=").as_bytes());
            record.extend_from_slice(name);
            record.push(b'\n');
            let mut pax = tar::Header::new_ustar();
            pax.set_entry_type(tar::EntryType::XHeader);
            pax.as_old_mut().name[..9].copy_from_slice(b"PaxHeader");
            pax.set_size(record.len() as u64);
            pax.set_mode(0o644);
            pax.set_cksum();
            out.append(&pax, &record[..]).unwrap();
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(*kind);
        let short = &name[..name.len().min(100)];
        h.as_old_mut().name[..short.len()].copy_from_slice(short);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(data.len() as u64);
        h.set_cksum();
        out.append(&h, *data).unwrap();
    }
    out.into_inner().unwrap()
}

#[test]
fn import_refuses_entries_no_container_could_unpack_and_names_them() {
    use tar::EntryType::{Directory, Link, Regular};
    let nook = Nook::new();
    let long: Vec<u8> = b"abcdefg/"
        .repeat(624)
        .into_iter()
        .chain(*b"deep")
        .collect();
    assert!(long.len() > 4096);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "../../x",
            raw_tar(&[(b"../../x", Regular, b"", b"escape")]),
            "`..`",
        ),
        ("..", raw_tar(&[(b"..", Directory, b"", b"")]), "`..`"),
        (
            "hard link",
            raw_tar(&[
                (b"etc/", Directory, b"", b""),
                (b"etc/alias", Link, b"etc/missing", b""),
            ]),
            "etc/missing",
        ),
        (
            "long path",
            raw_tar(&[(&long, Regular, b"", b"deep")]),
            "more than 4095",
        ),
        (
            ".wh..",
            raw_tar(&[
                (b"etc/", Directory, b"", b""),
                (b"etc/.wh..", Regular, b"", b""),
            ]),
            "names no file",
        ),
        (
            ".wh...",
            raw_tar(&[(b".wh...", Regular, b"", b"")]),
            "names no file",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    nook.ok(&["images"]);
    let before = nook.snapshot();
    for (what, data, reason) in cases {
        let path = dir.path().join("hostile.tar");
        std::fs::write(&path, &data).unwrap();
        let err = nook.fails(&["import", path.to_str().unwrap(), "hostile"]);
        assert!(err.contains("hostile.tar"), "{what}: {err}");
        assert!(err.contains(reason), "{what}: {err}");
        let entry = match what {
            "hard link" => "hard link etc/alias".to_string(),
            "long path" => "entry abcdefg/abcdefg".to_string(),
            ".wh.." => "entry etc/.wh..:".to_string(),
            ".wh..." => "entry .wh...:".to_string(),
            other => format!("entry {other} has"),
        };
        assert!(err.contains(&entry), "{what}: {err}");
        assert_eq!(nook.snapshot(), before, "{what}: the store is unchanged");
        assert!(
            nook.fails(&["inspect", "hostile"])
                .contains("No such image"),
            "{what}"
        );
    }
}

#[test]
fn a_full_disk_during_import_or_load_is_named_as_such() {
    use nook_tests::rootless::Rootless;
    let nook = Rootless::new();
    let store = nook.root();
    let _mounted = nook_tests::SmallTmpfs::mount(&store, "1m", nook.user());
    nook.ok(&["images"]);
    // 3 MB that no compression shrinks, in a tarball readable by the test user.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let noise: Vec<u8> = (0..3 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(noise.len() as u64);
    tar.append_data(&mut h, "big", &noise[..]).unwrap();
    let input = store.parent().unwrap().join("big.tar");
    std::fs::write(&input, tar.into_inner().unwrap()).unwrap();
    for args in [
        vec!["import", input.to_str().unwrap(), "big"],
        vec!["load", "-i", input.to_str().unwrap()],
    ] {
        let err = nook.fails(&args);
        assert!(err.contains("is full"), "{args:?}: {err}");
        assert!(err.contains(store.to_str().unwrap()), "{args:?}: {err}");
        assert!(
            !err.contains("corrupt") && !err.contains("truncated") && !err.contains("cannot read"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(nook.ok(&["images", "-q"]), "");
}
