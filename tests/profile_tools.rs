//! `sipnotify profile ...` against its compatibility peers: the real `openssl enc` command
//! line (both key derivation digests, with and without gzip, both directions), RFC 8188's
//! own examples, and the MPP guide's macro examples.

mod common;

use common::{bin, openssl, run_ok, temp_dir};
use std::path::{Path, PathBuf};
use std::process::Command;

const KEY: &str = "SecretPhrase1234";
const PROFILE: &str = "<flat-profile>\n<Resync_On_Reset> Yes </Resync_On_Reset>\n<Resync_Periodic> 7200 </Resync_Periodic>\n<Profile_Rule>[--key $SC] http://prov.telco.com/cfg/$MA.xml</Profile_Rule>\n</flat-profile>\n";

/// [`PROFILE`] as `DIR/profile.xml`.
fn plain_profile(dir: &Path) -> PathBuf {
    let plain = dir.join("profile.xml");
    std::fs::write(&plain, PROFILE).unwrap();
    plain
}

fn gzip_file(path: &Path) -> PathBuf {
    let gz = path.with_extension("xml.gz");
    let out = run_ok(Command::new("gzip").arg("-c").arg(path));
    std::fs::write(&gz, out.stdout).unwrap();
    gz
}

#[test]
fn files_encrypted_by_openssl_decrypt_with_sipnotify() {
    let Some(_) = openssl() else { return };
    let dir = temp_dir("from-openssl");
    let plain = plain_profile(&dir);
    let gz = gzip_file(&plain);
    for md in ["sha256", "md5"] {
        for (input, gzipped) in [(&plain, false), (&gz, true)] {
            let sealed = dir.join(format!("{md}-{gzipped}.cfg"));
            run_ok(
                openssl()
                    .unwrap()
                    .args(["enc", "-e", "-aes-256-cbc", "-md", md, "-k", KEY])
                    .arg("-in")
                    .arg(input)
                    .arg("-out")
                    .arg(&sealed),
            );
            let out = run_ok(
                bin()
                    .args(["profile", "decrypt", "--md", md])
                    .arg(&sealed)
                    .arg("-")
                    .env("SIPNOTIFY_PROFILE_KEY", KEY),
            );
            assert_eq!(
                out.stdout,
                std::fs::read(input).unwrap(),
                "{md} gzip {gzipped}"
            );
            // The other digest is a wrong key: exit 2, saying so.
            let other = if md == "md5" { "sha256" } else { "md5" };
            let out = bin()
                .args(["profile", "decrypt", "--md", other])
                .arg(&sealed)
                .arg("-")
                .env("SIPNOTIFY_PROFILE_KEY", KEY)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(2));
            assert!(String::from_utf8_lossy(&out.stderr).contains("wrong key"));
            assert!(out.stdout.is_empty());
        }
    }
}

#[test]
fn files_encrypted_by_sipnotify_decrypt_with_openssl() {
    let Some(_) = openssl() else { return };
    let dir = temp_dir("to-openssl");
    let plain = plain_profile(&dir);
    for md in ["sha256", "md5"] {
        for gzip in [false, true] {
            let sealed = dir.join(format!("{md}-{gzip}.cfg"));
            let mut cmd = bin();
            cmd.args(["profile", "encrypt", "--md", md]);
            if gzip {
                cmd.arg("--gzip");
            }
            run_ok(
                cmd.arg(&plain)
                    .arg(&sealed)
                    .env("SIPNOTIFY_PROFILE_KEY", KEY),
            );
            let out = run_ok(
                openssl()
                    .unwrap()
                    .args(["enc", "-d", "-aes-256-cbc", "-md", md, "-k", KEY])
                    .arg("-in")
                    .arg(&sealed),
            );
            let text = if gzip {
                let gz = dir.join("out.gz");
                std::fs::write(&gz, &out.stdout).unwrap();
                run_ok(Command::new("gzip").arg("-dc").arg(&gz)).stdout
            } else {
                out.stdout
            };
            assert_eq!(text, PROFILE.as_bytes(), "{md} gzip {gzip}");
        }
    }
}

/// In `dir`: the plain profile, the profile encrypted with [`KEY`] by `profile encrypt
/// --key-file`, and that file, which holds the key and `newline`.
fn sealed_profile(dir: &Path, newline: &str) -> (PathBuf, PathBuf, PathBuf) {
    let plain = plain_profile(dir);
    let sealed = dir.join("profile.cfg");
    let key_file = dir.join("key");
    std::fs::write(&key_file, format!("{KEY}{newline}")).unwrap();
    run_ok(
        bin()
            .args(["profile", "encrypt", "--key-file"])
            .arg(&key_file)
            .arg(&plain)
            .arg(&sealed),
    );
    (plain, sealed, key_file)
}

#[test]
fn a_wrong_key_or_a_corrupt_file_exits_2_saying_what_is_wrong() {
    let dir = temp_dir("wrong");
    let (plain, sealed, _) = sealed_profile(&dir, "\n");
    let decrypt = |key: &str, file: &Path| {
        bin()
            .args(["profile", "decrypt", "--key", key])
            .arg(file)
            .arg("-")
            .output()
            .unwrap()
    };
    let ok = decrypt(KEY, &sealed);
    assert_eq!(ok.stdout, PROFILE.as_bytes());
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert!(stderr.contains("warning: --key is visible"), "{stderr}");
    assert!(!stderr.contains(KEY));
    let wrong = decrypt("SecretPhrase1235", &sealed);
    assert_eq!(wrong.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("wrong key") && !stderr.contains("SecretPhrase"),
        "{stderr}"
    );
    let bytes = std::fs::read(&sealed).unwrap();
    let cut = dir.join("cut.cfg");
    std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
    let out = decrypt(KEY, &cut);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cut short"));
    let out = decrypt(KEY, &plain);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Salted__"));
}

/// A key comes from its file, else SIPNOTIFY_PROFILE_KEY, else --key, as a password does:
/// a --key behind either is said to be ignored, and the file loses one final newline
/// (LF or CRLF), no more.
#[test]
fn a_key_behind_its_file_or_variable_is_said_to_be_ignored() {
    let (_, sealed, key_file) = sealed_profile(&temp_dir("ignored"), "\r\n");
    let decrypt = |key_args: &[&str], env: Option<&str>| {
        let mut command = bin();
        command.args(["profile", "decrypt"]).args(key_args);
        command.env_remove("SIPNOTIFY_PROFILE_KEY");
        if let Some(env) = env {
            command.env("SIPNOTIFY_PROFILE_KEY", env);
        }
        command.arg(&sealed).arg("-").output().unwrap()
    };
    let key_file = key_file.to_str().unwrap();
    for (args, env, by) in [
        (
            &["--key", "Wrong", "--key-file", key_file][..],
            None,
            "--key-file",
        ),
        (&["--key", "Wrong"][..], Some(KEY), "SIPNOTIFY_PROFILE_KEY"),
    ] {
        let out = decrypt(args, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.stdout, PROFILE.as_bytes(), "{by}: {stderr}");
        let said = format!("warning: --key is ignored: {by} comes first");
        assert!(stderr.contains(&said), "{stderr}");
    }
    // Two newlines: the key is the line and one newline, not the key.
    std::fs::write(key_file, format!("{KEY}\n\n")).unwrap();
    let out = decrypt(&["--key-file", key_file], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong key"));
}

#[test]
fn rfc8188_examples_decode_byte_for_byte_and_round_trip() {
    use base64::Engine as _;
    let b64 = |s: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .unwrap()
    };
    let dir = temp_dir("rfc8188");
    for (name, ikm, body) in [
        ("3.1", "yqdlZ-tYemfogSmv7Ws5PQ", "I1BsxtFttlv3u_Oo94xnmwAAEAAA-NAVub2qFgBEuQKRapoZu-IxkIva3MEB1PD-ly8Thjg"),
        ("3.2", "BO3ZVPxUlnLORbVGMpbT1Q", "uNCkWiNYzKTnBN9ji3-qWAAAABkCYTHOG8chz_gnvgOqdGYovxyjuqRyJFjEDyoF1Fvkj6hQPdPHI51OEUKEpgz3SsLWIqS_uA"),
    ] {
        let file = dir.join(name);
        std::fs::write(&file, b64(body)).unwrap();
        let out = run_ok(bin()
            .args(["profile", "decode"])
            .arg(&file)
            .arg("-")
            .env("SIPNOTIFY_PROFILE_IKM", ikm));
        assert_eq!(out.stdout, b"I am the walrus", "{name}");
        // A wrong IKM is exit 2.
        let out = bin()
            .args(["profile", "decode"])
            .arg(&file)
            .arg("-")
            .env("SIPNOTIFY_PROFILE_IKM", "AAAAAAAAAAAAAAAAAAAAAA")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("wrong IKM"));
    }
    let plain = plain_profile(&dir);
    let encoded = dir.join("profile.gcm");
    run_ok(
        bin()
            .args(["profile", "encode", "--record-size", "40", "--key-id", "k1"])
            .arg(&plain)
            .arg(&encoded)
            .env("SIPNOTIFY_PROFILE_IKM", "BO3ZVPxUlnLORbVGMpbT1Q"),
    );
    let bytes = std::fs::read(&encoded).unwrap();
    assert_eq!(&bytes[16..23], b"\0\0\0\x28\x02k1");
    let out = run_ok(
        bin()
            .args(["profile", "decode", "-", "-"])
            .stdin(std::fs::File::open(&encoded).unwrap())
            .env("SIPNOTIFY_PROFILE_IKM", "BO3ZVPxUlnLORbVGMpbT1Q"),
    );
    assert_eq!(out.stdout, PROFILE.as_bytes());
}

fn expand(args: &[&str]) -> String {
    let out = run_ok(bin().args(["profile", "expand"]).args(args));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn expand_follows_the_guides_examples() {
    let mac = ["--mac", "000E08012345"];
    let url = |rule: &str, extra: &[&str]| {
        let mut args = vec![rule];
        args.extend_from_slice(&mac);
        args.extend_from_slice(extra);
        expand(&args)
            .lines()
            .find_map(|l| l.strip_prefix("url: ").map(str::to_string))
            .unwrap()
    };
    assert_eq!(url("$(MAU)config.cfg", &[]), "000E08012345config.cfg");
    assert_eq!(url("$STRANGE$MAU.cfg", &[]), "$STRANGE000E08012345.cfg");
    assert_eq!(url("$$MAU", &[]), "$MAU");
    assert_eq!(
        url("http://remote.server.com/cisco/$MA.cfg", &[]),
        "http://remote.server.com/cisco/000e08012345.cfg"
    );
    let conditional = "(\"$CCERT\" eq \"Installed\")? https://p.tel.com/config? | https://p.tel.com/config?cisco$MAU";
    assert_eq!(
        url(conditional, &[]),
        "https://p.tel.com/config?cisco000E08012345"
    );
    assert_eq!(
        url(conditional, &["--var", "CCERT=Installed"]),
        "https://p.tel.com/config?"
    );
    let swver = "($SWVER ne sip88xx.11-3-2MPP0001-609)? http://ps.tell.com/sw/sip88xx.11-3-2MPP0001-BN.loads";
    let out = bin()
        .args(["profile", "expand", swver])
        .args(mac)
        .args(["--var", "SWVER=sip88xx.11-3-2MPP0001-609"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no alternative applies"));
    // Keys are options, expanded from GPP_SA..SD, and never printed.
    let shown = expand(&[
        "[--key $SC --uid $SA --pwd $SB] https://p/$MA.xml",
        "--mac",
        "000E08012345",
        "--var",
        "SC=TopSecretKey",
        "--var",
        "SA=admin",
        "--var",
        "GPP_SB=TopSecretPwd",
    ]);
    assert!(
        shown.contains("key: <redacted> (12 characters)") && shown.contains("uid: admin"),
        "{shown}"
    );
    assert!(!shown.contains("TopSecret"), "{shown}");
    let out = bin()
        .args(["profile", "expand", "/x", "--mac", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin()
        .args([
            "profile",
            "expand",
            "/x",
            "--mac",
            "000E08012345",
            "--var",
            "STRANGE=1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn check_reports_lines_and_exits_2_on_errors() {
    let dir = temp_dir("check");
    let good = dir.join("good.xml");
    std::fs::write(&good, PROFILE).unwrap();
    let out = run_ok(bin().args(["profile", "check"]).arg(&good));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let gz = gzip_file(&good);
    run_ok(bin().args(["profile", "check"]).arg(&gz));
    let bad = dir.join("bad.xml");
    std::fs::write(
        &bad,
        "<flat-profile>\n<Resync_Periodic>1</Resync_Periodic>\n<Line_Enable_1_ ua=\"yes\">Yes</Line_Enable_1_>\n<Resync_Periodic>2</Resync_Periodic>\n</flat-profile>\n",
    )
    .unwrap();
    let out = bin().args(["profile", "check"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    let said = [
        "bad.xml:3: error: <Line_Enable_1_ ua=\"yes\">",
        "bad.xml:4: warning: <Resync_Periodic> is also at line 2",
    ];
    common::assert_contains_all("profile check", &text, &said);
    std::fs::write(&bad, "<flat-profile>\n<A>\n").unwrap();
    let out = bin().args(["profile", "check"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not well-formed"));
}
