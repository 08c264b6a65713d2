//! How random a DNS label looks: the signal behind the DGA detector and the "high-entropy
//! label" part of the tunneling detector. Kept simple and explainable: a few character
//! statistics add up to a score, and a label scoring 3 or more looks random.
//!
//! | feature | points |
//! | --- | --- |
//! | share of letter pairs among the 250 most common English bigrams < 0.5 (< 0.35) | 1 (2) |
//! | a run of 5 (7) or more consonants | 1 (2) |
//! | 2 (4) or more switches between digits and letters | 1 (2) |
//! | a quarter or more digits, mixed with letters | 1 |
//! | character entropy of 3.5 bits or more | 1 |
//!
//! Labels shorter than 8 characters and IDNA labels (`xn--`) never look random: there is too
//! little to judge. Random lowercase labels of 8-16 letters score as random about half the
//! time, hex and alphanumeric ones nearly always; a DGA makes many names, so the detector needs
//! only some of them. Dictionary-word DGAs are not caught by this (nothing character-based is).

/// The 250 most frequent letter pairs in English text (P. Norvig's counts over the Google
/// books corpus), most frequent first.
const COMMON_BIGRAMS: [&str; 250] = [
    "th", "he", "in", "er", "an", "re", "on", "at", "en", "nd", "ti", "es", "or", "te", "of", "ed",
    "is", "it", "al", "ar", "st", "to", "nt", "ng", "se", "ha", "as", "ou", "io", "le", "ve", "co",
    "me", "de", "hi", "ri", "ro", "ic", "ne", "ea", "ra", "ce", "li", "ch", "ll", "be", "ma", "si",
    "om", "ur", "ca", "el", "ta", "la", "ns", "di", "fo", "ho", "pe", "ec", "pr", "no", "ct", "us",
    "ac", "ot", "il", "tr", "ly", "nc", "et", "ut", "ss", "so", "rs", "un", "lo", "wa", "ge", "ie",
    "wh", "ee", "wi", "em", "ad", "ol", "rt", "po", "we", "na", "ul", "ni", "ts", "mo", "ow", "pa",
    "im", "mi", "ai", "sh", "ir", "su", "id", "os", "iv", "ia", "am", "fi", "ci", "vi", "pl", "ig",
    "tu", "ev", "ld", "ry", "mp", "fe", "bl", "ab", "gh", "ty", "op", "wo", "sa", "ay", "ex", "ke",
    "fr", "oo", "av", "ag", "if", "ap", "gr", "od", "bo", "sp", "rd", "do", "uc", "bu", "ei", "ov",
    "by", "rm", "ep", "tt", "oc", "fa", "ef", "cu", "rn", "sc", "gi", "da", "yo", "cr", "cl", "du",
    "ga", "qu", "ue", "ff", "ba", "ey", "ls", "va", "um", "pp", "ua", "up", "lu", "go", "ht", "ru",
    "ug", "ds", "lt", "pi", "rc", "rr", "eg", "au", "ck", "ew", "mu", "br", "bi", "pt", "ak", "pu",
    "ui", "rg", "ib", "tl", "ny", "ki", "rk", "ys", "ob", "mm", "fu", "ph", "og", "ms", "ye", "ud",
    "mb", "ip", "ub", "oi", "rl", "gu", "dr", "hr", "cc", "tw", "ft", "wn", "nu", "af", "hu", "nn",
    "eo", "vo", "rv", "nf", "xp", "gn", "sm", "fl", "iz", "ok", "nl", "my", "gl", "aw", "ju", "oa",
    "eq", "sy", "sl", "ps", "jo", "lf", "nv", "je", "nk", "kn",
];

/// `COMMON_BIGRAMS` as a 26×26 table, built at compile time.
const COMMON: [[bool; 26]; 26] = {
    let mut table = [[false; 26]; 26];
    let mut i = 0;
    while i < COMMON_BIGRAMS.len() {
        let b = COMMON_BIGRAMS[i].as_bytes();
        table[(b[0] - b'a') as usize][(b[1] - b'a') as usize] = true;
        i += 1;
    }
    table
};

/// The features of one label, kept for evidence and tests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Randomness {
    /// Share of adjacent letter pairs that are common English bigrams (1.0 with fewer than 4).
    pub common_bigrams: f64,
    pub longest_consonant_run: u32,
    pub digit_switches: u32,
    pub digits: u32,
    /// Shannon entropy of the characters, bits per character.
    pub entropy: f64,
    pub score: u32,
}

impl Randomness {
    pub fn looks_random(&self) -> bool {
        self.score >= 3
    }
}

/// Scores a lowercase label; `None` when it is too short or an IDNA label to judge.
pub fn randomness(label: &str) -> Option<Randomness> {
    let b = label.as_bytes();
    if b.len() < 8 || label.starts_with("xn--") {
        return None;
    }
    let (mut pairs, mut common) = (0u32, 0u32);
    let (mut run, mut longest_run) = (0u32, 0u32);
    let (mut digits, mut switches) = (0u32, 0u32);
    let mut counts = [0u32; 256];
    for (i, &c) in b.iter().enumerate() {
        counts[usize::from(c)] += 1;
        if c.is_ascii_digit() {
            digits += 1;
        }
        if c.is_ascii_lowercase() && !matches!(c, b'a' | b'e' | b'i' | b'o' | b'u' | b'y') {
            run += 1;
            longest_run = longest_run.max(run);
        } else {
            run = 0;
        }
        if let Some(&next) = b.get(i + 1) {
            if c.is_ascii_lowercase() && next.is_ascii_lowercase() {
                pairs += 1;
                common += u32::from(COMMON[usize::from(c - b'a')][usize::from(next - b'a')]);
            }
            if c != b'-' && next != b'-' && c.is_ascii_digit() != next.is_ascii_digit() {
                switches += 1;
            }
        }
    }
    let len = b.len() as f64;
    let entropy = counts
        .iter()
        .filter(|&&n| n > 0)
        .map(|&n| {
            let p = f64::from(n) / len;
            -p * p.log2()
        })
        .sum::<f64>();
    let common_bigrams = if pairs >= 4 {
        f64::from(common) / f64::from(pairs)
    } else {
        1.0
    };
    let mut score = 0;
    if common_bigrams < 0.35 {
        score += 2;
    } else if common_bigrams < 0.5 {
        score += 1;
    }
    score += u32::from(longest_run >= 5) + u32::from(longest_run >= 7);
    score += match switches {
        0..=1 => 0,
        2..=3 => 1,
        _ => 2,
    };
    if digits >= 3 && digits * 4 >= b.len() as u32 && (digits as usize) < b.len() {
        score += 1;
    }
    if entropy >= 3.5 {
        score += 1;
    }
    Some(Randomness {
        common_bigrams,
        longest_consonant_run: longest_run,
        digit_switches: switches,
        digits,
        entropy,
        score,
    })
}

/// Whether a lowercase label looks machine-made.
pub fn looks_random(label: &str) -> bool {
    randomness(label).is_some_and(|r| r.looks_random())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Registered-domain labels of real, busy services: none may look random.
    const REAL: &[&str] = &[
        "google",
        "googleapis",
        "gstatic",
        "googleusercontent",
        "googlesyndication",
        "googletagmanager",
        "googleadservices",
        "doubleclick",
        "amazonaws",
        "cloudfront",
        "amazontrust",
        "awsstatic",
        "akamaiedge",
        "akamaihd",
        "akamaized",
        "akamaitechnologies",
        "edgekey",
        "edgesuite",
        "azureedge",
        "azurewebsites",
        "azurecr",
        "microsoftonline",
        "windowsupdate",
        "msftncsi",
        "msftconnecttest",
        "trafficmanager",
        "office365",
        "sharepoint",
        "cloudflare",
        "cloudflareinsights",
        "cloudflarestorage",
        "github",
        "githubusercontent",
        "gitlab",
        "bitbucket",
        "atlassian",
        "docker",
        "kubernetes",
        "letsencrypt",
        "digicert",
        "sectigo",
        "globalsign",
        "pythonhosted",
        "npmjs",
        "rubygems",
        "sonatype",
        "jfrog",
        "fastly",
        "fastlylb",
        "jsdelivr",
        "datadoghq",
        "newrelic",
        "sentry",
        "elastic",
        "grafana",
        "prometheus",
        "mongodb",
        "redislabs",
        "snowflakecomputing",
        "databricks",
        "confluent",
        "stripe",
        "paypal",
        "twilio",
        "sendgrid",
        "mailgun",
        "facebook",
        "instagram",
        "cdninstagram",
        "whatsapp",
        "linkedin",
        "youtube",
        "icloud",
        "mzstatic",
        "nflxvideo",
        "spotify",
        "tiktokcdn",
        "byteoversea",
        "steampowered",
        "playstation",
        "xboxlive",
        "hcaptcha",
        "recaptcha",
        "qualtrics",
        "crwdcntrl",
        "salesforce",
        "servicenow",
        "wikipedia",
        "stackoverflow",
        "huggingface",
        "anthropic",
        "tensorflow",
        "cert-manager",
        "ingress-nginx",
        "metrics-server",
        "payment-svc",
        "elasticbeanstalk",
        "execute-api",
        "digitaloceanspaces",
        "backblazeb2",
        "cloudinary",
        "bunnycdn",
        "stackpath",
        "incapsula",
        "ultradns",
        "markmonitor",
        "cscglobal",
        "identrust",
        "xn--80ak6aa92e",
        "zscaler",
        "paloaltonetworks",
        "crowdstrike",
        "sentinelone",
        "malwarebytes",
        "kaspersky",
    ];

    #[test]
    fn real_names_do_not_look_random() {
        for label in REAL {
            let r = randomness(label);
            assert!(!looks_random(label), "{label}: {r:?}");
        }
    }

    #[test]
    fn machine_made_names_look_random() {
        for label in [
            "xjwqpzkdmvbt",
            "qmzkxvbrtplw",
            "kfjwhqzmxnvpt",
            "a3f9c2e17b4d8e60",
            "9f86d081884c7d659a2feaa0c55ad015",
            "x7k2m9q4w1z8",
            "zpbhcqfrtxwkjdm",
            "mnbvcxzlkjhgf",
        ] {
            let r = randomness(label);
            assert!(looks_random(label), "{label}: {r:?}");
        }
    }

    #[test]
    fn short_and_idna_labels_are_not_judged() {
        assert_eq!(randomness("qzxjkw"), None);
        assert_eq!(randomness("xn--bcher-kva8445foa"), None);
        assert!(!looks_random("xkcd"));
    }

    #[test]
    fn random_strings_are_caught_often_enough() {
        // A fixed xorshift stream: random-looking labels of 10-16 letters and of 16 hex digits.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut letters = 0;
        let mut hex = 0;
        for _ in 0..1000 {
            let len = 10 + (next() % 7) as usize;
            let l: String = (0..len)
                .map(|_| (b'a' + (next() % 26) as u8) as char)
                .collect();
            letters += usize::from(looks_random(&l));
            let h: String = (0..16)
                .map(|_| b"0123456789abcdef"[(next() % 16) as usize] as char)
                .collect();
            hex += usize::from(looks_random(&h));
        }
        assert!(letters > 400, "letters: {letters}/1000");
        assert!(hex > 950, "hex: {hex}/1000");
    }
}
