//! The offline analyzer: a deterministic reading of a conversation with no model and no
//! network, so AI analysis works out of the box and says what it is (`provider: "offline"`).
//! It finds the customer's questions and which of them no agent has answered since, the
//! team's response times, the conversation's keywords, a language guess from function words, a
//! sentiment from small word lists, and a canned response that fits what is still open.
//!
//! Word lists cover English, Spanish, Portuguese, French, German and Italian; text in another
//! language still gets questions (by `?`), response times and keywords, with language `und`.

use std::collections::{BTreeMap, HashSet};

/// The model name insights of this analyzer carry.
pub const MODEL: &str = "palaver-offline-1";

/// Who wrote a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Customer,
    Team,
}

/// One message of the conversation, oldest first.
#[derive(Debug, Clone)]
pub struct Line<'a> {
    pub seq: i64,
    pub side: Side,
    pub text: &'a str,
    /// The server's arrival time, epoch milliseconds.
    pub at_ms: i64,
}

/// A canned response the suggestion may pick.
#[derive(Debug, Clone)]
pub struct Canned<'a> {
    pub id: &'a str,
    pub short_code: &'a str,
    pub text: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sentiment {
    Positive,
    Neutral,
    Negative,
}

/// A question the customer asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub seq: i64,
    pub text: String,
    /// An agent wrote after it.
    pub answered: bool,
}

/// What the analyzer found.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub summary: String,
    pub questions: Vec<Question>,
    /// The unanswered questions' texts.
    pub open_questions: Vec<String>,
    pub recommendations: Vec<String>,
    /// The fitting canned response (its id and text, variables not yet filled in).
    pub suggested: Option<(String, String)>,
    pub sentiment: Sentiment,
    /// ISO 639-1, or `und`.
    pub language: String,
    pub keywords: Vec<String>,
    /// From the customer's first waiting message to the team's reply, each time.
    pub response_times_ms: Vec<i64>,
    /// The customer has been waiting this long for a reply at `now`.
    pub waiting_ms: Option<i64>,
}

/// A question's text in a summary or a list, at most this many characters.
const QUESTION_CHARS: usize = 200;
const KEYWORDS: usize = 5;

/// Reads `lines` (oldest first) as of `now_ms`; `canned` are the workspace's canned responses.
pub fn analyze(lines: &[Line<'_>], canned: &[Canned<'_>], now_ms: i64) -> Analysis {
    let all_words: Vec<String> = lines.iter().flat_map(|l| words(l.text)).collect();
    let language = guess_language(&all_words);
    let questions = questions(lines, language);
    let open_questions: Vec<String> = questions
        .iter()
        .filter(|q| !q.answered)
        .map(|q| q.text.clone())
        .collect();
    let (response_times_ms, waiting_ms) = response_times(lines, now_ms);
    let customer_words: Vec<String> = lines
        .iter()
        .filter(|l| l.side == Side::Customer)
        .flat_map(|l| words(l.text))
        .collect();
    let sentiment = sentiment(&customer_words);
    let keywords = keywords(&all_words, language);
    let suggested = suggest(lines, &open_questions, canned, language);
    let mut a = Analysis {
        summary: String::new(),
        questions,
        open_questions,
        recommendations: Vec::new(),
        suggested,
        sentiment,
        language: language.unwrap_or("und").to_owned(),
        keywords,
        response_times_ms,
        waiting_ms,
    };
    a.summary = summary(lines, &a);
    a.recommendations = recommendations(&a, canned);
    a
}

/// Lower-cased words: runs of letters, digits and inner apostrophes.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Function words by language: how a language is told apart, and what keywords skip.
#[rustfmt::skip]
const STOPWORDS: [(&str, &[&str]); 6] = [
    ("en", &["the", "and", "is", "are", "to", "of", "it", "you", "i", "my", "for", "with", "this",
        "that", "can", "do", "what", "how", "have", "be", "in", "on", "a", "an", "we", "your", "me",
        "not", "was", "will", "please", "there", "any", "about", "from", "just", "would", "could",
        "should", "when", "where", "which", "does", "did", "yes", "no", "hi", "hello", "thanks",
        "thank", "also", "but", "or", "if", "so", "at", "as", "by", "our", "us", "they", "them",
        "their", "its", "am", "been", "has", "had", "get", "got", "one", "all", "some", "more"]),
    ("es", &["el", "la", "los", "las", "de", "que", "y", "en", "un", "una", "es", "por", "para",
        "con", "no", "mi", "su", "lo", "se", "del", "al", "como", "pero", "más", "hola", "gracias",
        "puedo", "tengo", "está", "esta", "qué", "cómo", "cuándo", "dónde", "sí", "muy", "ya", "me",
        "te", "le", "hay", "son", "sus"]),
    ("pt", &["o", "a", "os", "as", "de", "que", "e", "em", "um", "uma", "é", "por", "para", "com",
        "não", "meu", "minha", "seu", "sua", "do", "da", "dos", "das", "no", "na", "como", "mas",
        "mais", "olá", "oi", "obrigado", "obrigada", "posso", "tenho", "está", "você", "sim",
        "muito", "já", "me", "eu", "tem"]),
    ("fr", &["le", "la", "les", "de", "des", "du", "et", "est", "un", "une", "en", "que", "qui",
        "pour", "avec", "pas", "ne", "je", "vous", "mon", "ma", "mes", "votre", "sur", "dans", "ce",
        "cette", "mais", "plus", "bonjour", "merci", "puis", "peux", "ai", "suis", "oui", "non",
        "très", "il", "elle", "nous", "au", "aux"]),
    ("de", &["der", "die", "das", "und", "ist", "ich", "nicht", "ein", "eine", "zu", "den", "mit",
        "sie", "es", "von", "für", "auf", "mein", "meine", "ihr", "wie", "was", "wann", "kann",
        "habe", "haben", "bitte", "danke", "hallo", "ja", "nein", "sehr", "auch", "aber", "oder",
        "wir", "dem", "des", "im", "noch"]),
    ("it", &["il", "lo", "la", "gli", "le", "di", "che", "e", "è", "un", "una", "per", "con", "non",
        "mio", "mia", "suo", "sua", "del", "della", "nel", "nella", "come", "ma", "più", "ciao",
        "grazie", "posso", "ho", "sono", "sì", "molto", "già", "mi", "ti", "ci", "anche", "questo",
        "questa"]),
];

fn stopwords(language: &str) -> &'static [&'static str] {
    STOPWORDS
        .iter()
        .find(|(l, _)| *l == language)
        .map_or(&[], |(_, w)| w)
}

/// The language whose function words are most frequent: at least 2 of them and more than
/// any other language's; `None` when the text does not tell.
fn guess_language(words: &[String]) -> Option<&'static str> {
    let mut scores: Vec<(&'static str, usize)> = STOPWORDS
        .iter()
        .map(|(lang, list)| {
            let hits = words.iter().filter(|w| list.contains(&w.as_str())).count();
            (*lang, hits)
        })
        .collect();
    scores.sort_by_key(|s| std::cmp::Reverse(s.1));
    match scores.as_slice() {
        [(lang, best), (_, second), ..] if *best >= 2 && best > second => Some(lang),
        _ => None,
    }
}

/// Words a sentence may start with to be a question without a question mark.
#[rustfmt::skip]
const ASKING: [(&str, &[&str]); 6] = [
    ("en", &["what", "how", "when", "where", "why", "who", "which", "can", "could", "is", "are",
        "do", "does", "did", "should", "would", "will", "may"]),
    ("es", &["qué", "cómo", "cuándo", "dónde", "cuál", "quién", "puedo", "puede", "hay"]),
    ("pt", &["quando", "onde", "qual", "quem", "posso", "pode"]),
    ("fr", &["comment", "quand", "où", "pourquoi", "quel", "quelle", "puis", "peut", "est"]),
    ("de", &["wie", "wann", "wo", "warum", "welche", "welcher", "wer", "kann", "können", "gibt"]),
    ("it", &["come", "quando", "dove", "perché", "quale", "chi", "posso", "può"]),
];

fn is_question(sentence: &str, language: Option<&str>) -> bool {
    let s = sentence.trim();
    if s.ends_with('?') || s.starts_with('¿') {
        return true;
    }
    let Some(first) = words(s).into_iter().next() else {
        return false;
    };
    let lang = language.unwrap_or("en");
    ASKING
        .iter()
        .find(|(l, _)| *l == lang)
        .is_some_and(|(_, w)| w.contains(&first.as_str()))
}

/// Sentences: split after `.`, `!`, `?` and line breaks, the mark kept.
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if matches!(c, '.' | '!' | '?' | '\n') {
            let end = i + c.len_utf8();
            out.push(&text[start..end]);
            start = end;
        }
    }
    out.push(&text[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|s| s.chars().any(char::is_alphanumeric))
        .collect()
}

fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(QUESTION_CHARS).collect();
    if s.chars().count() > QUESTION_CHARS {
        out.push('…');
    }
    out
}

/// The customer's questions, each answered when an agent wrote after it.
fn questions(lines: &[Line<'_>], language: Option<&str>) -> Vec<Question> {
    let last_team = lines
        .iter()
        .filter(|l| l.side == Side::Team)
        .map(|l| l.seq)
        .max();
    lines
        .iter()
        .filter(|l| l.side == Side::Customer)
        .flat_map(|l| {
            sentences(l.text)
                .into_iter()
                .filter(|s| is_question(s, language))
                .map(|s| Question {
                    seq: l.seq,
                    text: clip(s),
                    answered: last_team.is_some_and(|t| t > l.seq),
                })
        })
        .collect()
}

/// How long each customer wait for the team lasted, and how long the current one has lasted.
fn response_times(lines: &[Line<'_>], now_ms: i64) -> (Vec<i64>, Option<i64>) {
    let mut waiting_since: Option<i64> = None;
    let mut times = Vec::new();
    for l in lines {
        match l.side {
            Side::Customer => {
                waiting_since.get_or_insert(l.at_ms);
            }
            Side::Team => {
                if let Some(since) = waiting_since.take() {
                    times.push((l.at_ms - since).max(0));
                }
            }
        }
    }
    (times, waiting_since.map(|since| (now_ms - since).max(0)))
}

#[rustfmt::skip]
const POSITIVE: &[&str] = &[
    "thanks", "thank", "great", "good", "perfect", "excellent", "awesome", "happy", "love",
    "helpful", "appreciate", "wonderful", "gracias", "genial", "perfecto", "excelente", "bueno",
    "obrigado", "obrigada", "ótimo", "perfeito", "merci", "parfait", "génial", "super", "danke",
    "perfekt", "toll", "grazie", "perfetto", "ottimo",
];
#[rustfmt::skip]
const NEGATIVE: &[&str] = &[
    "bad", "terrible", "awful", "angry", "worst", "wrong", "broken", "refund", "complaint",
    "disappointed", "unhappy", "hate", "useless", "late", "never", "cancel", "scam", "malo",
    "problema", "queja", "reembolso", "nunca", "enojado", "ruim", "reclamação", "mauvais",
    "problème", "plainte", "remboursement", "schlecht", "beschwerde", "erstattung", "cattivo",
    "reclamo", "rimborso", "problem",
];

/// The customer's tone: which of the two word lists they used more.
fn sentiment(customer_words: &[String]) -> Sentiment {
    let count = |list: &[&str]| {
        customer_words
            .iter()
            .filter(|w| list.contains(&w.as_str()))
            .count()
    };
    let (pos, neg) = (count(POSITIVE), count(NEGATIVE));
    match pos.cmp(&neg) {
        std::cmp::Ordering::Greater => Sentiment::Positive,
        std::cmp::Ordering::Less => Sentiment::Negative,
        std::cmp::Ordering::Equal => Sentiment::Neutral,
    }
}

/// A word worth counting: not a function word, not a number, at least 3 letters.
fn significant(word: &str, language: Option<&str>) -> bool {
    word.chars().count() >= 3
        && !word.chars().all(|c| c.is_ascii_digit())
        && !stopwords("en").contains(&word)
        && !language.is_some_and(|l| stopwords(l).contains(&word))
}

/// The most frequent significant words (ties alphabetically).
fn keywords(words: &[String], language: Option<&str>) -> Vec<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for w in words.iter().filter(|w| significant(w, language)) {
        *counts.entry(w.as_str()).or_default() += 1;
    }
    let mut ranked: Vec<(&str, usize)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    ranked
        .into_iter()
        .take(KEYWORDS)
        .map(|(w, _)| w.to_owned())
        .collect()
}

/// The canned response sharing the most significant words with what is open (the open
/// questions, else what the customer wrote since the team's last message).
fn suggest(
    lines: &[Line<'_>],
    open_questions: &[String],
    canned: &[Canned<'_>],
    language: Option<&str>,
) -> Option<(String, String)> {
    let basis: Vec<String> = if open_questions.is_empty() {
        let since_team = lines.iter().rposition(|l| l.side == Side::Team);
        let start = since_team.map_or(0, |i| i + 1);
        lines[start..].iter().flat_map(|l| words(l.text)).collect()
    } else {
        open_questions.iter().flat_map(|q| words(q)).collect()
    };
    let wanted: HashSet<&str> = basis
        .iter()
        .map(String::as_str)
        .filter(|w| significant(w, language))
        .collect();
    if wanted.is_empty() {
        return None;
    }
    canned
        .iter()
        .map(|c| {
            // Variables (`{{lead.name}}`) are not words of the answer.
            let text = strip_variables(c.text);
            let own: HashSet<String> = words(&text)
                .into_iter()
                .chain(words(&c.short_code.replace(['-', '_'], " ")))
                .collect();
            let score = own.iter().filter(|w| wanted.contains(w.as_str())).count();
            (score, c)
        })
        .filter(|(score, _)| *score > 0)
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.short_code.cmp(a.1.short_code)))
        .map(|(_, c)| (c.id.to_owned(), c.text.to_owned()))
}

fn strip_variables(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        match rest[open..].find("}}") {
            Some(close) => rest = &rest[open + close + 2..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// "45 s", "4 min", "2 h 5 min", "3 d".
pub fn duration(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 86_400 => match (s / 3600, s % 3600 / 60) {
            (h, 0) => format!("{h} h"),
            (h, m) => format!("{h} h {m} min"),
        },
        s => format!("{} d", s / 86_400),
    }
}

fn median(values: &[i64]) -> Option<i64> {
    let mut v = values.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn summary(lines: &[Line<'_>], a: &Analysis) -> String {
    let customer = lines.iter().filter(|l| l.side == Side::Customer).count();
    let team = lines.len() - customer;
    if customer == 0 {
        return format!(
            "Offline analysis: no customer messages here; the team wrote {}.",
            plural(team, "message", "messages")
        );
    }
    let mut parts = vec![format!(
        "Offline analysis: the customer wrote {}",
        plural(customer, "message", "messages")
    )];
    if !a.questions.is_empty() {
        let open = a.open_questions.len();
        let mut asked = format!(
            "asked {}",
            plural(a.questions.len(), "question", "questions")
        );
        if open > 0 {
            asked.push_str(&format!(" ({open} still open)"));
        }
        parts.push(asked);
    }
    let mut out = parts.join(" and ");
    out.push_str(&format!(
        "; the team replied {}.",
        plural(a.response_times_ms.len(), "time", "times")
    ));
    if let (Some(first), Some(med)) = (a.response_times_ms.first(), median(&a.response_times_ms)) {
        out.push_str(&format!(
            " First response after {}, median {}.",
            duration(*first),
            duration(med)
        ));
    }
    if let Some(waiting) = a.waiting_ms {
        out.push_str(&format!(" Waiting for a reply for {}.", duration(waiting)));
    }
    if !a.keywords.is_empty() {
        out.push_str(&format!(" Topics: {}.", a.keywords.join(", ")));
    }
    out
}

fn recommendations(a: &Analysis, canned: &[Canned<'_>]) -> Vec<String> {
    let mut out: Vec<String> = a
        .open_questions
        .iter()
        .take(3)
        .map(|q| format!("Answer the open question: \u{201c}{q}\u{201d}"))
        .collect();
    if let Some(waiting) = a.waiting_ms {
        out.push(format!(
            "Reply to the customer: they have been waiting {}.",
            duration(waiting)
        ));
    }
    if a.sentiment == Sentiment::Negative {
        out.push("The customer sounds unhappy: acknowledge the problem before answering.".into());
    }
    if let Some((id, _)) = &a.suggested {
        if let Some(c) = canned.iter().find(|c| c.id == id) {
            out.push(format!("The canned response /{} fits.", c.short_code));
        }
    }
    if a.open_questions.is_empty() && a.waiting_ms.is_none() {
        out.push("Nothing is open: close the conversation or set it pending.".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn line(seq: i64, side: Side, text: &str, at_min: i64) -> Line<'_> {
        Line {
            seq,
            side,
            text,
            at_ms: at_min * MIN,
        }
    }

    #[test]
    fn finds_questions_and_which_are_open() {
        let lines = [
            line(
                1,
                Side::Customer,
                "Hi. Can I take ibuprofen with my blood pressure pills?",
                0,
            ),
            line(
                2,
                Side::Team,
                "Better paracetamol. Which pills do you take?",
                4,
            ),
            line(
                3,
                Side::Customer,
                "Amlodipine. How many paracetamol a day",
                6,
            ),
        ];
        let canned = [
            Canned {
                id: "c1",
                short_code: "hours",
                text: "We are open 9 to 18.",
            },
            Canned {
                id: "c2",
                short_code: "dose",
                text: "Hello {{lead.name}}, adults take up to 4 paracetamol a day.",
            },
        ];
        let a = analyze(&lines, &canned, 16 * MIN);
        assert_eq!(a.language, "en");
        assert_eq!(a.questions.len(), 2);
        assert!(a.questions[0].answered);
        assert_eq!(a.open_questions, ["How many paracetamol a day"]);
        assert_eq!(a.response_times_ms, [4 * MIN]);
        assert_eq!(a.waiting_ms, Some(10 * MIN));
        assert_eq!(
            a.suggested,
            Some((
                "c2".to_owned(),
                "Hello {{lead.name}}, adults take up to 4 paracetamol a day.".to_owned()
            ))
        );
        assert_eq!(a.keywords[0], "paracetamol");
        assert!(a.summary.starts_with("Offline analysis: the customer wrote 2 messages and asked 2 questions (1 still open)"), "{}", a.summary);
        assert!(
            a.summary.contains("First response after 4 min"),
            "{}",
            a.summary
        );
        assert!(
            a.summary.contains("Waiting for a reply for 10 min"),
            "{}",
            a.summary
        );
        assert!(
            a.recommendations.iter().any(|r| r.contains("/dose")),
            "{:?}",
            a.recommendations
        );
        // The same input, the same reading.
        assert_eq!(analyze(&lines, &canned, 16 * MIN).summary, a.summary);
    }

    #[test]
    fn guesses_the_language_and_the_tone() {
        let es = [line(
            1,
            Side::Customer,
            "¿Hola, cuándo llega mi pedido? Es la tercera vez que pregunto, muy malo el servicio",
            0,
        )];
        let a = analyze(&es, &[], 0);
        assert_eq!(a.language, "es");
        assert_eq!(a.questions.len(), 1);
        assert_eq!(a.sentiment, Sentiment::Negative);
        let de = [
            line(1, Side::Customer, "Danke, das ist perfekt und sehr gut", 0),
            line(2, Side::Team, "Gern!", 1),
        ];
        let a = analyze(&de, &[], MIN);
        assert_eq!(a.language, "de");
        assert_eq!(a.sentiment, Sentiment::Positive);
        assert!(a.open_questions.is_empty() && a.waiting_ms.is_none());
        assert!(a
            .recommendations
            .iter()
            .any(|r| r.starts_with("Nothing is open")));
        // Too little to tell.
        assert_eq!(
            analyze(&[line(1, Side::Customer, "ok", 0)], &[], 0).language,
            "und"
        );
    }

    #[test]
    fn a_conversation_without_the_customer_says_so() {
        let a = analyze(&[line(1, Side::Team, "Your order shipped.", 0)], &[], 0);
        assert!(a.summary.contains("no customer messages"), "{}", a.summary);
        assert_eq!(a.suggested, None);
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(duration(45_000), "45 s");
        assert_eq!(duration(4 * MIN + 10_000), "4 min");
        assert_eq!(duration(125 * MIN), "2 h 5 min");
        assert_eq!(duration(120 * MIN), "2 h");
        assert_eq!(duration(3 * 24 * 60 * MIN), "3 d");
    }
}
