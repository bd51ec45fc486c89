//! glibc `getopt_long` semantics, to the byte: grouped short options,
//! `-Aarg` / `-A arg`, `--long`, `--long=arg`, `--long arg`, unambiguous
//! abbreviations, `--` ending the options, operands anywhere (unless
//! `POSIXLY_CORRECT` is set), and glibc's error messages.

/// One long option.
#[derive(Clone, Copy, Debug)]
pub struct LongOpt {
    pub name: &'static str,
    pub has_arg: bool,
    /// The short option it stands for.
    pub val: u8,
}

/// What the command line says, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Opt(u8, Option<Vec<u8>>),
    /// glibc's message (with `argv[0]:` and newline); parsing stops here.
    Error(Vec<u8>),
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub items: Vec<Item>,
    pub operands: Vec<Vec<u8>>,
}

fn msg(argv0: &[u8], parts: &[&[u8]]) -> Item {
    let mut m = argv0.to_vec();
    m.extend_from_slice(b": ");
    for p in parts {
        m.extend_from_slice(p);
    }
    m.push(b'\n');
    Item::Error(m)
}

/// Whether `c` is a short option, and whether it takes an argument.
fn short(optstring: &[u8], c: u8) -> Option<bool> {
    if c == b':' {
        return None;
    }
    let i = optstring.iter().position(|&o| o == c)?;
    Some(optstring.get(i + 1) == Some(&b':'))
}

/// Parses `args` (with `args[0]` the program name, used in messages).
pub fn parse(
    args: &[Vec<u8>],
    optstring: &[u8],
    longopts: &[LongOpt],
    posixly_correct: bool,
) -> Parsed {
    let mut out = Parsed::default();
    let argv0: &[u8] = args.first().map_or(&b""[..], |a| a);
    let mut i = 1;
    while i < args.len() {
        let arg = &args[i];
        if arg == b"--" {
            out.operands.extend(args[i + 1..].iter().cloned());
            return out;
        }
        if arg.len() < 2 || arg[0] != b'-' {
            if posixly_correct {
                out.operands.extend(args[i..].iter().cloned());
                return out;
            }
            out.operands.push(arg.clone());
            i += 1;
            continue;
        }
        if let Some(body) = arg.strip_prefix(b"--") {
            i += 1;
            let (name, value) = match body.iter().position(|&c| c == b'=') {
                Some(eq) => (&body[..eq], Some(&body[eq + 1..])),
                None => (body, None),
            };
            let exact = longopts.iter().find(|o| o.name.as_bytes() == name);
            let found = match exact {
                Some(o) => o,
                None => {
                    let matches: Vec<&LongOpt> = longopts
                        .iter()
                        .filter(|o| o.name.as_bytes().starts_with(name))
                        .collect();
                    let Some(&first) = matches.first() else {
                        out.items
                            .push(msg(argv0, &[b"unrecognized option '--", body, b"'"]));
                        return out;
                    };
                    let ambiguous = matches
                        .iter()
                        .any(|o| o.has_arg != first.has_arg || o.val != first.val);
                    if ambiguous {
                        let mut parts: Vec<&[u8]> =
                            vec![b"option '--", body, b"' is ambiguous; possibilities:"];
                        // glibc lists the first match and every one that differs from it.
                        for o in &matches {
                            if std::ptr::eq(*o, first)
                                || o.has_arg != first.has_arg
                                || o.val != first.val
                            {
                                parts.extend_from_slice(&[b" '--", o.name.as_bytes(), b"'"]);
                            }
                        }
                        out.items.push(msg(argv0, &parts));
                        return out;
                    }
                    first
                }
            };
            let optarg = match (found.has_arg, value) {
                (false, Some(_)) => {
                    out.items.push(msg(
                        argv0,
                        &[
                            b"option '--",
                            found.name.as_bytes(),
                            b"' doesn't allow an argument",
                        ],
                    ));
                    return out;
                }
                (false, None) => None,
                (true, Some(v)) => Some(v.to_vec()),
                (true, None) => match args.get(i) {
                    Some(next) => {
                        i += 1;
                        Some(next.clone())
                    }
                    None => {
                        out.items.push(msg(
                            argv0,
                            &[
                                b"option '--",
                                found.name.as_bytes(),
                                b"' requires an argument",
                            ],
                        ));
                        return out;
                    }
                },
            };
            out.items.push(Item::Opt(found.val, optarg));
            continue;
        }
        // A cluster of short options.
        i += 1;
        let mut j = 1;
        while j < arg.len() {
            let c = arg[j];
            j += 1;
            match short(optstring, c) {
                None => {
                    out.items
                        .push(msg(argv0, &[b"invalid option -- '", &[c], b"'"]));
                    return out;
                }
                Some(false) => out.items.push(Item::Opt(c, None)),
                Some(true) => {
                    let optarg = if j < arg.len() {
                        arg[j..].to_vec()
                    } else if let Some(next) = args.get(i) {
                        i += 1;
                        next.clone()
                    } else {
                        out.items.push(msg(
                            argv0,
                            &[b"option requires an argument -- '", &[c], b"'"],
                        ));
                        return out;
                    };
                    out.items.push(Item::Opt(c, Some(optarg)));
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: &[LongOpt] = &[
        LongOpt {
            name: "extended",
            has_arg: false,
            val: b'x',
        },
        LongOpt {
            name: "range",
            has_arg: true,
            val: b'A',
        },
        LongOpt {
            name: "read-rc",
            has_arg: false,
            val: b'c',
        },
        LongOpt {
            name: "read-rc-from",
            has_arg: true,
            val: b'C',
        },
    ];

    fn p(args: &[&str]) -> Parsed {
        let mut v: Vec<Vec<u8>> = vec![b"pmap".to_vec()];
        v.extend(args.iter().map(|a| a.as_bytes().to_vec()));
        parse(&v, b"xXA:cC:", LONG, false)
    }

    fn opt(c: u8, a: Option<&str>) -> Item {
        Item::Opt(c, a.map(|a| a.as_bytes().to_vec()))
    }

    fn err(s: &str) -> Item {
        Item::Error(s.as_bytes().to_vec())
    }

    #[test]
    fn short_options() {
        let r = p(&["-xX", "1", "-A10,20", "-A", "5", "2"]);
        assert_eq!(
            r.items,
            vec![
                opt(b'x', None),
                opt(b'X', None),
                opt(b'A', Some("10,20")),
                opt(b'A', Some("5"))
            ]
        );
        assert_eq!(r.operands, vec![b"1".to_vec(), b"2".to_vec()]);
        assert_eq!(
            p(&["-xA"]).items,
            vec![
                opt(b'x', None),
                err("pmap: option requires an argument -- 'A'\n")
            ]
        );
        assert_eq!(
            p(&["-xZ"]).items,
            vec![opt(b'x', None), err("pmap: invalid option -- 'Z'\n")]
        );
        assert_eq!(p(&["-:"]).items, vec![err("pmap: invalid option -- ':'\n")]);
        assert_eq!(
            p(&["-", "--", "-x"]).operands,
            vec![b"-".to_vec(), b"-x".to_vec()]
        );
    }

    #[test]
    fn long_options() {
        assert_eq!(p(&["--ext"]).items, vec![opt(b'x', None)]);
        assert_eq!(p(&["--range=1"]).items, vec![opt(b'A', Some("1"))]);
        assert_eq!(p(&["--range", "1"]).items, vec![opt(b'A', Some("1"))]);
        assert_eq!(p(&["--range="]).items, vec![opt(b'A', Some(""))]);
        assert_eq!(p(&["--read-rc"]).items, vec![opt(b'c', None)]);
        assert_eq!(
            p(&["--r=5"]).items,
            vec![err(
                "pmap: option '--r=5' is ambiguous; possibilities: '--range' '--read-rc' '--read-rc-from'\n"
            )]
        );
        assert_eq!(
            p(&["--foo=1"]).items,
            vec![err("pmap: unrecognized option '--foo=1'\n")]
        );
        assert_eq!(
            p(&["--ext=1"]).items,
            vec![err("pmap: option '--extended' doesn't allow an argument\n")]
        );
        assert_eq!(
            p(&["--range"]).items,
            vec![err("pmap: option '--range' requires an argument\n")]
        );
    }

    #[test]
    fn posixly_correct_stops_at_first_operand() {
        let v: Vec<Vec<u8>> = ["pmap", "1", "-x"]
            .iter()
            .map(|a| a.as_bytes().to_vec())
            .collect();
        let r = parse(&v, b"x", LONG, true);
        assert!(r.items.is_empty());
        assert_eq!(r.operands.len(), 2);
    }
}
