//! The options IronClaw knows, command by command, and the check that finds
//! the first option of a call it does not know.
//!
//! GNU tools keep growing options, and some of them delete or replace what
//! they touch (`tar --remove-files`, `rsync --remove-source-files`). An
//! option the classifier has never seen may be one of those, so it is never
//! taken as harmless: it makes a reading command medium, and a command that
//! deletes or moves data high.
//!
//! The tables were built from the `--help` output (and `git <sub> -h`) of
//! Debian bookworm's coreutils, findutils, grep, diffutils, git and friends,
//! then corrected by hand where the help text's layout misleads. Only exact
//! names count: GNU and git accept any unambiguous abbreviation of a long
//! option (`tar --remove` is `--remove-files`), and an abbreviation is
//! treated as an option IronClaw does not know.
//!
//! Not checked here: wrappers (`env`, `timeout`, `nice`, `xargs` …), whose
//! own options are skipped and whose command is judged; interpreters and
//! shells, which parse their own options; build tools and package managers
//! (`make`, `cargo`, `npm`, `pip` …), judged by subcommand and already at
//! least medium whenever they run code; and the git subcommands with no
//! table here (`submodule`, `bisect`, `bundle`, the network ones). A word
//! only known at run time is taken as an operand, though it may expand to
//! an option.

use super::listed;

/// The long options of coreutils' md5sum and sha*sum, which share one
/// option parser.
const CHECKSUM_LONG: &str = "--binary --check --help --ignore-missing --quiet --status --strict \
    --tag --text --version --warn --zero";

/// The long options of `colordiff`, `diff`, `zdiff`: one program
/// (or one option parser) under several names.
const DIFF_LONG: &str = "\
        --GTYPE-group-format= --LTYPE-line-format= --brief --color --context --ed \
        --exclude-from= --exclude= --expand-tabs --from-file= --help --horizon-lines= \
        --ifdef= --ignore-all-space --ignore-blank-lines --ignore-case \
        --ignore-file-name-case --ignore-matching-lines= --ignore-space-change \
        --ignore-tab-expansion --ignore-trailing-space --initial-tab --label= \
        --left-column --line-format= --minimal --new-file --no-dereference \
        --no-ignore-file-name-case --normal --paginate --palette= --rcs --recursive \
        --report-identical-files --show-c-function --show-function-line= --side-by-side \
        --speed-large-files --starting-file= --strip-trailing-cr --suppress-blank-empty \
        --suppress-common-lines --tabsize= --text --to-file= --unidirectional-new-file \
        --unified --version --width=";

/// The long options of `dir`, `ls`, `vdir`: one program
/// (or one option parser) under several names.
const LS_LONG: &str = "\
        --all --almost-all --author --block-size= --classify --color --context \
        --dereference --dereference-command-line \
        --dereference-command-line-symlink-to-dir --directory --dired --escape \
        --file-type --format= --full-time --group-directories-first --help \
        --hide-control-chars --hide= --human-readable --hyperlink --ignore-backups \
        --ignore= --indicator-style= --inode --kibibytes --literal --no-group \
        --numeric-uid-gid --quote-name --quoting-style= --recursive --reverse \
        --show-control-chars --si --size --sort= --tabsize= --time-style= --time= \
        --version --width= --zero";

/// The long options of `dos2unix`, `unix2dos`: one program
/// (or one option parser) under several names.
const DOS2UNIX_LONG: &str = "\
        --help --keep-date --license --newfile --oldfile --quiet --version --force \
        --keep-bom --remove-bom --safe --verbose --info --add-bom --skip-symlink \
        --follow-symlink --replace-symlink";

/// The long options of `egrep`, `fgrep`, `grep`, `zgrep`: one program
/// (or one option parser) under several names.
const GREP_LONG: &str = "\
        --after-context= --basic-regexp --before-context= --binary --binary-files= \
        --byte-offset --color --colour --context= --count --dereference-recursive \
        --devices= --directories= --exclude-dir= --exclude-from= --exclude= \
        --extended-regexp --file= --files-with-matches --files-without-match \
        --fixed-strings --group-separator= --help --ignore-case --include= --initial-tab \
        --invert-match --label= --line-buffered --line-number --line-regexp --max-count= \
        --no-filename --no-group-separator --no-ignore-case --no-messages --null \
        --null-data --only-matching --perl-regexp --quiet --recursive --regexp= --silent \
        --text --version --with-filename --word-regexp";

/// The long options of `hd`, `hexdump`: one program
/// (or one option parser) under several names.
const HEXDUMP_LONG: &str = "\
        --canonical --color --format-file= --format= --help --length= --no-squeezing \
        --one-byte-char --one-byte-octal --skip= --two-bytes-decimal --two-bytes-hex \
        --two-bytes-octal --version";

/// The long options of `unzstd`, `zstd`, `zstdcat`: one program
/// (or one option parser) under several names.
const ZSTD_LONG: &str = "\
        --adapt --auto-threads= --decompress --dictID= --exclude-compressed --fast \
        --filelist= --force --format= --help --keep --long --maxdict= --no-dictID \
        --output-dir-flat= --output-dir-mirror= --patch-from= --priority= --quiet --rm \
        --rsyncable --single-thread --size-hint= --stdout --stream-size= \
        --target-compressed-block-size= --test --trace= --train --train-cover \
        --train-fastcover --train-legacy --ultra --verbose --version";

/// The long options of the checkers (flake8, mypy, pycodestyle, pylint,
/// shellcheck): one list for all of them, read-only tools whose options
/// overlap widely.
const LINTER_LONG: &str = "\
    --help --version --config= --select= --ignore= --extend-ignore= --extend-select= \
    --exclude= --max-line-length= --max-complexity= --count --statistics \
    --show-source --format= --output-file= --quiet --verbose --strict \
    --ignore-missing-imports --follow-imports= --python-version= --disable= \
    --enable= --rcfile= --disable-error-code= --enable-error-code= \
    --check-untyped-defs --disallow-untyped-defs --no-implicit-optional \
    --warn-unused-ignores --show-error-codes --pretty --install-types \
    --non-interactive --cache-dir= --exclude= --errors-only --reports= --jobs= \
    --severity= --shell= --external-sources --check-sourced --color= --enable= \
    --exclude= --include= --wiki-link-count= --norc --diff --benchmark --first \
    --max-doc-length= --hang-closing --indent-size= --filename= --per-file-ignores=";

/// The revision and diff options git's `log`, `show`, `diff`, `diff-*`,
/// `rev-list`, `whatchanged` and `format-patch` all take: one list, so the
/// tables below cannot drift apart.
macro_rules! git_log_and_diff_options {
    () => {
        "\
        --abbrev --abbrev-commit --abbrev= --after= --all --all-match \
        --alternate-refs --ancestry-path --anchored= --author-date-order \
        --author= --base --basic-regexp --before= --binary --bisect \
        --boundary --branches --break-rewrites --break-rewrites= --cached \
        --cc --check --cherry --cherry-mark --cherry-pick --children \
        --clear-decorations --color --color-moved --color-moved-ws= \
        --color-moved= --color-words --color-words= --color= \
        --combined-all-paths --committer= --compact-summary --count \
        --cumulative --date-order --date= --decorate \
        --decorate-refs-exclude= --decorate-refs= --decorate= \
        --default-prefix --dense --diff-algorithm= --diff-filter \
        --diff-filter= --diff-merges= --dirstat --dirstat-by-file \
        --dirstat-by-file= --dirstat= --do-walk --dst-prefix= --encoding= \
        --exclude-first-parent-only --exclude= --exit-code --expand-tabs \
        --expand-tabs= --ext-diff --extended-regexp --find-copies \
        --find-copies-harder --find-copies= --find-object= --find-renames \
        --find-renames= --first-parent --fixed-strings --follow --format= \
        --full-diff --full-history --full-index --function-context --glob= \
        --graph --grep= --histogram --ignore-all-space --ignore-blank-lines \
        --ignore-cr-at-eol --ignore-matching-lines= --ignore-missing \
        --ignore-space-at-eol --ignore-space-change --ignore-submodules \
        --ignore-submodules= --in-commit-order --indent-heuristic \
        --indexed-objects --inter-hunk-context= --invert-grep \
        --irreversible-delete --ita-invisible-in-index \
        --ita-visible-in-index --left-right --line-prefix= --log-size \
        --mailmap --max-count= --max-parents= --merge-base --merges \
        --min-parents= --minimal --name-only --name-status --no-index \
        --no-prefix --no-renames --no-walk --no-walk= --not --notes --notes= \
        --numstat --object-names --oneline --ours --output-directory= \
        --output-indicator-context= --output-indicator-new= \
        --output-indicator-old= --output= --parents --patch --patch-with-raw \
        --patch-with-stat --patience --perl-regexp --pickaxe-all \
        --pickaxe-regex --pretty --pretty= --quiet --raw --reflog \
        --regexp-ignore-case --relative --relative-date --relative= \
        --remerge-diff --remotes --rename-empty --reverse --rotate-to= \
        --shortstat --show-linear-break --show-notes --show-pulls \
        --show-signature --simplify-by-decoration --simplify-merges \
        --since-as-filter= --since= --single-worktree --skip-to= --skip= \
        --source --sparse --src-prefix= --staged --stat --stat-count= \
        --stat-graph-width= --stat-name-width= --stat-width= --stat= --stdin \
        --submodule --submodule= --summary --tags --text --textconv --theirs \
        --topo-order --unified --unified= --unpacked --until= --use-mailmap \
        --walk-reflogs --word-diff --word-diff-regex= --word-diff= \
        --ws-error-highlight="
    };
}

/// The options of one program (or of one git subcommand).
pub(super) struct Options {
    pub(super) program: &'static str,
    /// Letters that take no value (`-l`, bundled as `-la`).
    flags: &'static str,
    /// Letters that take a value, attached (`-n5`) or as the next word.
    valued: &'static str,
    /// Letters whose value may only be attached, and is optional (`sed
    /// -i.bak`, `date -Iseconds`).
    attached: &'static str,
    /// Long options; those that take a value end in `=` (`--lines=`), and
    /// may take it as the next word. Words written with one dash here
    /// (`-autoskip`) are whole options of programs that spell them so.
    long: &'static str,
}

const fn opt(
    program: &'static str,
    flags: &'static str,
    valued: &'static str,
    long: &'static str,
) -> Options {
    Options {
        program,
        flags,
        valued,
        attached: "",
        long,
    }
}

impl Options {
    const fn attached(self, attached: &'static str) -> Options {
        Options { attached, ..self }
    }
}

/// Commands whose words only look like options (`[ -f x ]`, `echo -n`,
/// `expr 1 - 2`): there is nothing to check.
pub(super) const FREE_ARGUMENTS: &str = "\
    : [ test true false expr let return exit break continue shift echo printf
";

/// Commands that read files, show information or convert files in ways
/// the classifier judges elsewhere. An option missing here makes the call
/// medium.
pub(super) const READING: &[Options] = &[
    opt(
        "ack",
        "HILQRSTWcfghiklnoqrsvwx",
        "ABCGm",
        "\
        --after-context= --before-context= --context= --count --files-with-matches \
        --files-without-matches --ignore-case --smart-case --invert-match --literal \
        --word-regexp --line= --max-count= --no-filename --with-filename --column \
        --nocolor --color --noheading --heading --type= --ignore-dir= --noignore-dir= \
        --help --version --sort-files --follow --nofollow --output= --match= --passthru \
        --print0",
    ),
    opt(
        "ag",
        "0DEFLQSUVZacfiklnopqrstuvwz",
        "ABCGgm",
        "\
        --after= --before= --context= --count --column --nocolor --color --noheading \
        --heading --hidden --ignore= --ignore-case --smart-case --case-sensitive \
        --literal --word-regexp --files-with-matches --files-without-matches \
        --filename-pattern= --depth= --follow --max-count= --nobreak --nofilename \
        --filename --null --only-matching --skip-vcs-ignores --unrestricted --search-zip \
        --stats --vimgrep --help --version --all-types --all-text --silent --pager= \
        --no-numbers --numbers",
    ),
    opt(
        "apropos",
        "?Vadelrvw",
        "CLMms",
        "\
        --and --config-file= --debug --exact --help --locale= --long --manpath= --regex \
        --section= --sections= --systems= --usage --verbose --version --wildcard",
    ),
    opt("arch", "", "", "--help --version"),
    opt("awk", "", "fFvW", "--help --version"),
    opt(
        "b2sum",
        "bctwz",
        "l",
        "\
        --binary --check --help --ignore-missing --length= --quiet --status --strict \
        --tag --text --version --warn --zero",
    ),
    opt(
        "base32",
        "di",
        "w",
        "--decode --help --ignore-garbage --version --wrap=",
    ),
    opt(
        "base64",
        "di",
        "w",
        "--decode --help --ignore-garbage --version --wrap=",
    ),
    opt(
        "basename",
        "az",
        "s",
        "--help --multiple --suffix= --version --zero",
    ),
    opt(
        "basenc",
        "di",
        "w",
        "\
        --base16 --base2lsbf --base2msbf --base32 --base32hex --base64 --base64url \
        --decode --help --ignore-garbage --version --wrap= --z85",
    ),
    opt("bc", "hilqsvw", "", ""),
    opt("bg", "", "", ""),
    opt(
        "bunzip2",
        "cdfkLqstvVz123456789",
        "",
        "\
        --decompress --compress --stdout --force --keep --small --quiet --verbose --help \
        --version --test --license --best --fast",
    ),
    opt(
        "bzcat",
        "cdfkLqstvVz123456789",
        "",
        "\
        --decompress --stdout --force --keep --small --quiet --verbose --help --version \
        --test",
    ),
    opt(
        "bzip2",
        "cdfkLqstvVz123456789",
        "",
        "\
        --decompress --compress --stdout --force --keep --small --quiet --verbose --help \
        --version --test --license --best --fast",
    ),
    opt(
        "cal",
        "13jmsySwvhV",
        "n",
        "\
        --one --three --julian --monday --sunday --year --twelve --week --vertical \
        --help --version --months= --span --color --reform=",
    ),
    opt("caller", "", "", ""),
    opt(
        "cat",
        "AETbenstuv",
        "",
        "\
        --help --number --number-nonblank --show-all --show-ends --show-nonprinting \
        --show-tabs --squeeze-blank --version",
    ),
    opt(
        "chgrp",
        "HLPRcfhv",
        "",
        "\
        --changes --dereference --help --no-dereference --no-preserve-root \
        --preserve-root --quiet --recursive --reference= --silent --verbose --version",
    ),
    opt(
        "chmod",
        "RcfvrwxXstugoa",
        "",
        "\
        --changes --help --no-preserve-root --preserve-root --quiet --recursive \
        --reference= --silent --verbose --version",
    ),
    opt(
        "chown",
        "HLPRcfhv",
        "",
        "\
        --changes --dereference --from= --help --no-dereference --no-preserve-root \
        --preserve-root --quiet --recursive --reference= --silent --verbose --version",
    ),
    opt(
        "cksum",
        "cwz",
        "al",
        "\
        --algorithm= --check --debug --help --ignore-missing --length= --quiet --status \
        --strict --tag --untagged --version --warn --zero",
    ),
    opt("clear", "Vx", "T", ""),
    opt(
        "cmp",
        "blsv",
        "in",
        "\
        --bytes= --help --ignore-initial= --print-bytes --quiet --silent --verbose \
        --version",
    ),
    opt(
        "colordiff",
        "BENTZabcdeilnpqrstuvwy",
        "CDFISUWXx",
        DIFF_LONG,
    ),
    opt(
        "column",
        "JLVdehtx",
        "EHNORTWcilnoprs",
        "\
        --fillrows --help --json --keep-empty-lines --output-separator= --output-width= \
        --separator= --table --table-columns-limit= --table-columns= \
        --table-header-repeat --table-hide= --table-name= --table-noextreme= \
        --table-noheadings --table-order= --table-right= --table-truncate= --table-wrap= \
        --tree-id= --tree-parent= --tree= --version",
    ),
    opt(
        "comm",
        "123z",
        "",
        "\
        --check-order --help --nocheck-order --output-delimiter= --total --version \
        --zero-terminated",
    ),
    opt("compgen", "abcdefgjksuvE", "AGWFCXPS", ""),
    opt(
        "csplit",
        "ksz",
        "bfn",
        "\
        --digits= --elide-empty-files --help --keep-files --prefix= --quiet --silent \
        --suffix-format= --suppress-matched --version",
    ),
    opt(
        "cut",
        "Mnsz",
        "bcdf",
        "\
        --bytes= --characters= --complement --delimiter= --fields= --help \
        --only-delimited --output-delimiter= --version --zero-terminated",
    ),
    opt(
        "date",
        "Ru",
        "dfrs",
        "\
        --date= --debug --file= --help --iso-8601 --reference= --resolution --rfc-3339= \
        --rfc-email --set= --universal --utc --version",
    )
    .attached("I"),
    opt("dd", "", "", "--help --version"),
    opt(
        "df",
        "HPTahiklv",
        "Btx",
        "\
        --all --block-size= --exclude-type= --help --human-readable --inodes --local \
        --no-sync --output --portability --print-type --si --sync --total --type= \
        --version",
    ),
    opt(
        "diff",
        "BENTZabcdeilnpqrstuvwy",
        "CDFISUWXx",
        DIFF_LONG,
    ),
    opt(
        "diff3",
        "3AETXaeimvx",
        "L",
        "\
        --diff-program= --easy-only --ed --help --initial-tab --label= --merge \
        --overlap-only --show-all --show-overlap --strip-trailing-cr --text --version",
    ),
    opt(
        "dir",
        "1ABCDFGHLNQRSUXZabcdfghiklmnopqrstuvx",
        "ITw",
        LS_LONG,
    ),
    opt("dirname", "z", "", "--help --version --zero"),
    opt("dirs", "clpv", "", ""),
    opt(
        "dos2unix",
        "hkLlnoqVFbrsvciem",
        "",
        DOS2UNIX_LONG,
    ),
    opt(
        "du",
        "0DHLPSabchklmsx",
        "BXdt",
        "\
        --all --apparent-size --block-size= --bytes --count-links --dereference \
        --dereference-args --exclude-from= --exclude= --files0-from= --help \
        --human-readable --inodes --max-depth= --no-dereference --null --one-file-system \
        --separate-dirs --si --summarize --threshold= --time --time-style= --time= \
        --total --version",
    ),
    opt(
        "egrep",
        "EFGHILPRTUVZabchilnoqrsvwxz",
        "ABCDNdefm",
        GREP_LONG,
    ),
    opt("expand", "i", "t", "--help --initial --tabs= --version"),
    opt("factor", "", "", "--help --version"),
    opt("fg", "", "", ""),
    opt(
        "fgrep",
        "EFGHILPRTUVZabchilnoqrsvwxz",
        "ABCDNdefm",
        GREP_LONG,
    ),
    opt(
        "file",
        "0CLNPSZbcdhiklnprsvz",
        "Fefm",
        "\
        --apple --brief --checking-printout --compile --debug --dereference \
        --exclude-quiet= --exclude= --extension --files-from= --help --keep-going --list \
        --magic-file= --mime --mime-encoding --mime-type --no-buffer --no-dereference \
        --no-pad --no-sandbox --parameter --preserve-date --print0 --raw --separator= \
        --special-files --uncompress --uncompress-noreport --version",
    ),
    opt(
        "flake8",
        "qv",
        "j",
        LINTER_LONG,
    ),
    opt(
        "fmt",
        "cstu",
        "gpw",
        "\
        --crown-margin --goal= --help --prefix= --split-only --tagged-paragraph \
        --uniform-spacing --version --width=",
    ),
    opt(
        "fold",
        "bs",
        "w",
        "--bytes --help --spaces --version --width=",
    ),
    opt(
        "free",
        "Vbghklmtvw",
        "cs",
        "\
        --bytes --committed --count= --gibi --giga --help --human --kibi --kilo --lohi \
        --mebi --mega --pebi --peta --seconds= --si --tebi --tera --total --version \
        --wide",
    ),
    opt("gawk", "", "fFvW", "--help --version"),
    opt("getconf", "a", "v", ""),
    opt("getopts", "", "", ""),
    opt(
        "grep",
        "EFGHILPRTUVZabchilnoqrsvwxz",
        "ABCDNdefm",
        GREP_LONG,
    ),
    opt("groups", "", "", "--help --version"),
    opt(
        "gunzip",
        "Ncfklnqrtv",
        "S",
        "\
        --force --help --keep --list --name --no-name --quiet --recursive --stdout \
        --suffix= --synchronous --test --verbose --version",
    ),
    opt(
        "gzip",
        "19LNVcdfhklnqrtv",
        "S",
        "\
        --best --decompress --fast --force --help --keep --license --list --name \
        --no-name --quiet --recursive --rsyncable --stdout --suffix= --synchronous \
        --test --verbose --version",
    ),
    opt(
        "hd",
        "CLVbcdhovx",
        "efns",
        HEXDUMP_LONG,
    ),
    opt(
        "head",
        "qvz",
        "cn",
        "--bytes= --help --lines= --quiet --silent --verbose --version --zero-terminated",
    ),
    opt("help", "dms", "", ""),
    opt(
        "hexdump",
        "CLVbcdhovx",
        "efns",
        HEXDUMP_LONG,
    ),
    opt("history", "canrwps", "d", ""),
    opt(
        "hostname",
        "AIabdfisy",
        "F",
        "\
        --alias --all-fqdns --all-ip-addresses --boot --domain --file= --fqdn \
        --ip-address --long --nis --short --yp --help --version",
    ),
    opt(
        "iconv",
        "?Vcls",
        "fot",
        "\
        --from-code= --help --list --output= --silent --to-code= --usage --verbose \
        --version",
    ),
    opt(
        "id",
        "GZagnruz",
        "",
        "--context --group --groups --help --name --real --user --version --zero",
    ),
    opt(
        "info",
        "akhvwx",
        "dfnoO",
        "\
        --all --apropos= --directory= --file= --help --index-search= --node= --output= \
        --show-options --version --where",
    ),
    opt("jobs", "lnprsx", "", ""),
    opt(
        "join",
        "iz",
        "12aejotv",
        "\
        --check-order --header --help --ignore-case --nocheck-order --version \
        --zero-terminated",
    ),
    opt(
        "jq",
        "CMRScenrs",
        "",
        "--arg --argjson --args --jsonargs --rawfile --slurpfile --tab",
    ),
    opt(
        "less",
        "?aABcCdeEfFgGiIJKLmMnNqQrRsSuUVwWX~",
        "bDhjkoOpPtTxyz#",
        "--help --version --quit-if-one-screen --no-init --RAW-CONTROL-CHARS --raw-control-chars --chop-long-lines --ignore-case --IGNORE-CASE --LINE-NUMBERS --line-numbers --quit-at-eof --QUIT-AT-EOF --squeeze-blank-lines --tabs= --pattern= --prompt= --mouse --incsearch --use-color --follow-name --jump-target= --shift= --header=",
    ),
    opt(
        "locale",
        "?Vackmv",
        "",
        "\
        --all-locales --category-name --charmaps --help --keyword-name --usage --verbose \
        --version",
    ),
    opt(
        "locate",
        "AbceiLPqrSwV0",
        "dln",
        "\
        --all --basename --count --database= --existing --follow --ignore-case --limit= \
        --nofollow --null --quiet --regex --regexp= --statistics --wholename --help \
        --version",
    ),
    opt("logname", "", "", "--help --version"),
    opt(
        "look",
        "Vadfh",
        "t",
        "--alphanum --alternative --help --ignore-case --terminate= --version",
    ),
    opt(
        "ls",
        "1ABCDFGHLNQRSUXZabcdfghiklmnopqrstuvx",
        "ITw",
        LS_LONG,
    ),
    opt(
        "lsb_release",
        "acdhirsv",
        "",
        "--all --codename --description --help --id --release --short --version",
    ),
    opt(
        "lsblk",
        "ADJMOPSTVabdfhilmnprstyz",
        "EIeowx",
        "\
        --all --ascii --bytes --dedup= --discard --exclude= --fs --help --include= \
        --inverse --json --list --merge --nodeps --noempty --noheadings --output-all \
        --output= --pairs --paths --perms --raw --scsi --shell --sort= --sysroot= \
        --topology --tree --version --width= --zoned",
    ),
    opt(
        "lscpu",
        "BCJVabcehpxy",
        "s",
        "\
        --all --bytes --caches --extended --help --hex --json --offline --online \
        --output-all --parse --physical --sysroot= --version",
    ),
    opt("lsof", "?Fgx", "EORTVZcdinpsu", ""),
    opt("lz4", "19Vbcdefhiklmqrtvz", "BD", ""),
    opt(
        "man",
        "7?DHIKTVWXZacdfikltuw",
        "CELMPRSemprs",
        "\
        --all --apropos --ascii --catman --config-file= --debug --default --ditroff \
        --encoding= --extension= --global-apropos --gxditview --help --html \
        --ignore-case --local-file --locale= --location --location-cat --manpath= \
        --match-case --names-only --nh --no-hyphenation --no-justification --no-subpages \
        --pager= --path --preprocessor= --prompt= --recode= --regex --sections= \
        --systems= --troff --troff-device --update --usage --version --warnings --whatis \
        --where --where-cat --wildcard",
    ),
    opt("mapfile", "t", "dnOsuCc", ""),
    opt("mawk", "", "fFvW", "--help --version"),
    opt("md5sum", "bctwz", "", CHECKSUM_LONG),
    opt(
        "mkdir",
        "Zpv",
        "m",
        "--context --help --mode= --parents --verbose --version",
    ),
    opt(
        "mktemp",
        "dqtu",
        "p",
        "--directory --dry-run --help --quiet --suffix= --tmpdir --version",
    ),
    opt(
        "more",
        "Vcdefhlpsu",
        "n",
        "\
        --clean-print --exit-on-eof --help --lines= --logical --no-pause --plain \
        --print-over --silent --squeeze --version",
    ),
    opt(
        "mypy",
        "qv",
        "mpc",
        LINTER_LONG,
    ),
    opt("nawk", "", "fFvW", "--help --version"),
    opt(
        "netstat",
        "CFMNWZacegilnoprsv",
        "",
        "\
        --all --cache --context --continuous --extend --fib --groups --interfaces \
        --listening --masquerade --numeric --numeric-hosts --numeric-ports \
        --numeric-users --programs --route --statistics --symbolic --timers --verbose \
        --wide",
    ),
    opt(
        "nl",
        "p",
        "bdfhilnsvw",
        "\
        --body-numbering= --footer-numbering= --header-numbering= --help \
        --join-blank-lines= --line-increment= --no-renumber --number-format= \
        --number-separator= --number-width= --section-delimiter= --starting-line-number= \
        --version",
    ),
    opt("nproc", "", "", "--all --help --ignore= --version"),
    opt(
        "numfmt",
        "Mz",
        "d",
        "\
        --debug --delimiter= --field= --format= --from-unit= --from= --grouping --header \
        --help --invalid= --padding= --round= --suffix= --to-unit= --to= --version \
        --zero-terminated",
    ),
    opt(
        "od",
        "abcdfilosvwx",
        "ANSjt",
        "\
        --address-radix= --endian= --format= --help --output-duplicates --read-bytes= \
        --skip-bytes= --strings --traditional --version --width",
    ),
    opt(
        "paste",
        "sz",
        "d",
        "--delimiters= --help --serial --version --zero-terminated",
    ),
    opt(
        "patch",
        "ENRTZbceflnstuv",
        "BDFVYdgioprz",
        "\
        --backup-if-mismatch --binary --dry-run --help --merge --no-backup-if-mismatch \
        --posix --quoting-style= --read-only= --reject-format= --verbose",
    ),
    opt(
        "pgrep",
        "ALVacfhilnovwx",
        "FGOPUdgrstu",
        "\
        --cgroup= --count --delimiter= --euid= --exact --full --group= --help \
        --ignore-ancestors --ignore-case --inverse --lightweight --list-full --list-name \
        --logpidfile --newest --ns= --nslist= --older= --oldest --parent= --pgroup= \
        --pidfile= --runstates= --session= --terminal= --uid= --version",
    ),
    opt("pidof", "chnqsxz", "do", ""),
    opt("printenv", "0", "", "--help --null --version"),
    opt(
        "ps",
        "AaCcdeFfHjLlMmNPTVwxyZ",
        "GgOopqstuUk",
        "\
        --deselect --Group= --group= --ppid= --sid= --User= --user= --pid= --quick-pid= \
        --tty= --context --headers --no-headers --cols= --columns= --width= --rows= \
        --lines= --format= --sort= --forest --help --info --version --cumulative",
    ),
    opt(
        "pstree",
        "AGSTUVZacghlnpstu",
        "CHN",
        "\
        --arguments --ascii --color= --compact-not --hide-threads --highlight-all \
        --highlight-pid= --long --ns-changes --ns-sort= --numeric-sort \
        --security-context --show-parents --show-pgids --show-pids --thread-names \
        --uid-changes --unicode --version --vt100",
    ),
    opt("pwd", "LP", "", "--help --logical --physical --version"),
    opt(
        "pycodestyle",
        "qv",
        "",
        LINTER_LONG,
    ),
    opt("pyflakes", "", "", "--help --version"),
    opt(
        "pylint",
        "Ev",
        "jdef",
        LINTER_LONG,
    ),
    opt("read", "ers", "adinNptu", ""),
    opt("readarray", "t", "dnOsuCc", ""),
    opt(
        "readlink",
        "efmnqsvz",
        "",
        "\
        --canonicalize --canonicalize-existing --canonicalize-missing --help \
        --no-newline --quiet --silent --verbose --version --zero",
    ),
    opt(
        "realpath",
        "LPemqsz",
        "",
        "\
        --canonicalize-existing --canonicalize-missing --help --logical --no-symlinks \
        --physical --quiet --relative-base= --relative-to= --strip --version --zero",
    ),
    opt("rev", "Vh", "", "--help --version"),
    opt(
        "rg",
        "0FHIJLNPSUabchilnopqsuvwxz",
        "ABCEMTdefgjmrt",
        "\
        --after-context= --before-context= --context= --binary --block-buffered \
        --byte-offset --case-sensitive --color= --colors= --column --context-separator= \
        --count --count-matches --crlf --debug --dfa-size-limit= --encoding= --engine= \
        --field-context-separator= --field-match-separator= --files --files-with-matches \
        --files-without-match --fixed-strings --follow --glob= --glob-case-insensitive \
        --heading --no-heading --hidden --iglob= --ignore-case --ignore-file= \
        --ignore-file-case-insensitive --include-zero --invert-match --json \
        --line-buffered --line-number --no-line-number --line-regexp --max-columns= \
        --max-columns-preview --max-count= --max-depth= --max-filesize= --mmap \
        --multiline --multiline-dotall --no-config --no-filename --no-ignore \
        --no-ignore-dot --no-ignore-exclude --no-ignore-files --no-ignore-global \
        --no-ignore-messages --no-ignore-parent --no-ignore-vcs --no-messages --null \
        --null-data --one-file-system --only-matching --passthru --path-separator= \
        --pcre2 --pretty --quiet --regex-size-limit= --regexp= --replace= --search-zip \
        --smart-case --sort= --sortr= --stats --text --threads= --trim --type= \
        --type-add= --type-clear= --type-not= --type-list --unrestricted --vimgrep \
        --with-filename --word-regexp --help --version --hyperlink-format= --no-unicode \
        --max-depth=",
    ),
    opt(
        "sdiff",
        "BEHWZabdilstv",
        "Iow",
        "\
        --diff-program= --expand-tabs --help --ignore-all-space --ignore-blank-lines \
        --ignore-case --ignore-matching-lines= --ignore-space-change \
        --ignore-tab-expansion --ignore-trailing-space --left-column --minimal --output= \
        --speed-large-files --strip-trailing-cr --suppress-common-lines --tabsize= \
        --text --version --width=",
    ),
    opt(
        "sed",
        "Enrsuz",
        "efl",
        "\
        --debug --expression= --file= --follow-symlinks --help --in-place --line-length= \
        --null-data --posix --quiet --regexp-extended --sandbox --separate --silent \
        --unbuffered --version --zero-terminated --binary",
    )
    .attached("i"),
    opt(
        "seq",
        "w",
        "fs",
        "--equal-width --format= --help --separator= --version",
    ),
    opt("set", "abefhkmnptuvxBCEHPT", "o", ""),
    opt("sha1sum", "bctwz", "", CHECKSUM_LONG),
    opt("sha224sum", "bctwz", "", CHECKSUM_LONG),
    opt("sha256sum", "bctwz", "", CHECKSUM_LONG),
    opt("sha384sum", "bctwz", "", CHECKSUM_LONG),
    opt("sha512sum", "bctwz", "", CHECKSUM_LONG),
    opt(
        "shasum",
        "0Uabchqstvw",
        "",
        "\
        --01 --UNIVERSAL --algorithm --binary --check --help --ignore-missing --quiet \
        --status --strict --tag --text --version --warn",
    ),
    opt(
        "shellcheck",
        "aVx",
        "CeWfiPSso",
        LINTER_LONG,
    ),
    opt("shopt", "pqsuo", "", ""),
    opt(
        "shuf",
        "erz",
        "ino",
        "\
        --echo --head-count= --help --input-range= --output= --random-source= --repeat \
        --version --zero-terminated",
    ),
    opt("sleep", "", "", "--help --version"),
    opt(
        "sort",
        "CMRVbcdfghimnrsuz",
        "STkot",
        "\
        --batch-size= --buffer-size= --check --check= --compress-program= --debug \
        --dictionary-order --field-separator= --files0-from= --general-numeric-sort \
        --help --human-numeric-sort --ignore-case --ignore-leading-blanks \
        --ignore-nonprinting --key= --merge --month-sort --numeric-sort --output= \
        --parallel= --random-sort --random-source= --reverse --sort= --stable \
        --temporary-directory= --unique --version --version-sort --zero-terminated",
    ),
    opt(
        "split",
        "deux",
        "Cablnt",
        "\
        --additional-suffix= --bytes= --elide-empty-files --filter= --help \
        --hex-suffixes --line-bytes= --lines= --number= --numeric-suffixes --separator= \
        --suffix-length= --unbuffered --verbose --version",
    ),
    opt(
        "ss",
        "046EHKMNOSTVZabdehilmnoprstuwxz",
        "ADFf",
        "\
        --all --bpf --cgroup --context --contexts --dccp --diag= --events --extended \
        --family= --filter= --help --inet-sockopt --info --ipv4 --ipv6 --kill \
        --listening --memory --mptcp --net --no-header --numeric --oneline --options \
        --packet --processes --query= --raw --resolve --sctp --socket= --summary --tcp \
        --threads --tipc --tipcinfo --tos --udp --unix --version --vsock --xdp",
    ),
    opt(
        "stat",
        "Lft",
        "c",
        "\
        --cached= --dereference --file-system --help --printf= --terse --version \
        --format=",
    ),
    opt("strings", "o", "TUadefhnstvw", "--bytes= --unicode="),
    opt(
        "stty",
        "aceglnopr",
        "F",
        "--all --file= --help --save --version",
    ),
    opt("sum", "rs", "", "--help --sysv --version"),
    opt(
        "tac",
        "br",
        "s",
        "--before --help --regex --separator= --version",
    ),
    opt(
        "tail",
        "Ffqvz",
        "cns",
        "\
        --bytes= --follow --help --lines= --max-unchanged-stats= --pid= --quiet --retry \
        --silent --sleep-interval= --verbose --version --zero-terminated",
    ),
    opt(
        "tee",
        "aip",
        "",
        "--append --help --ignore-interrupts --output-error --version",
    ),
    opt("times", "", "", ""),
    opt(
        "top",
        "1EHOSUVbcdehinopsuw",
        "",
        "\
        --accum-time-toggle --batch-mode --cmdline-toggle --delay --filter-any-user \
        --filter-only-euser --help --idle-toggle --iterations --list-fields --pid \
        --scale-summary-mem --scale-task-mem --secure-mode --single-cpu-toggle \
        --sort-override --threads-show --version --width",
    ),
    opt(
        "touch",
        "acfhm",
        "drt",
        "--date= --help --no-create --no-dereference --reference= --time= --version",
    ),
    opt("tput", "Vx", "ST", ""),
    opt(
        "tr",
        "Ccdst",
        "",
        "--complement --delete --help --squeeze-repeats --truncate-set1 --version",
    ),
    opt(
        "tree",
        "aAdfilxqNQpugshDFvtrcUSCnJXR",
        "LPIoH",
        "\
        --help --version --noreport --inodes --device --dirsfirst --filesfirst \
        --charset= --filelimit= --timefmt= --du --prune --sort= --matchdirs \
        --ignore-case --fromfile --gitignore --gitfile= --info --infofile= --metafirst \
        --si --nolinks --hyperlink --scheme= --authority= --opt-toggle --fflinks",
    ),
    opt(
        "truncate",
        "co",
        "rs",
        "--help --io-blocks --no-create --reference= --size= --version",
    ),
    opt("tsort", "", "", "--help --version"),
    opt("tty", "s", "", "--help --quiet --silent --version"),
    opt("type", "afptP", "", ""),
    opt("ulimit", "SHabcdefiklmnpqrstuvxPRT", "", ""),
    opt("umask", "pS", "", ""),
    opt(
        "uname",
        "aimnoprsv",
        "",
        "\
        --all --hardware-platform --help --kernel-name --kernel-release --kernel-version \
        --machine --nodename --operating-system --processor --version",
    ),
    opt(
        "uncompress",
        "Ncfklnqrtv",
        "S",
        "\
        --force --help --keep --list --name --no-name --quiet --recursive --stdout \
        --suffix= --synchronous --test --verbose --version",
    ),
    opt(
        "unexpand",
        "a",
        "t",
        "--all --first-only --help --tabs= --version",
    ),
    opt(
        "uniq",
        "Dcdiuz",
        "fsw",
        "\
        --all-repeated --check-chars= --count --group --help --ignore-case --repeated \
        --skip-chars= --skip-fields= --unique --version --zero-terminated",
    ),
    opt(
        "unix2dos",
        "hkLlnoqVFbrsvciem",
        "",
        DOS2UNIX_LONG,
    ),
    opt("unset", "fvn", "", ""),
    opt(
        "unxz",
        "HVcdefhklqtvz",
        "0T",
        "\
        --compress --decompress --extreme --force --help --keep --list --long-help \
        --quiet --stdout --test --threads= --verbose --version",
    ),
    opt(
        "unzstd",
        "BHMSTVbcdefhiklqrv",
        "Do",
        ZSTD_LONG,
    ),
    opt("uptime", "Vhps", "", "--help --pretty --since --version"),
    opt("users", "", "", "--help --version"),
    opt(
        "vdir",
        "1ABCDFGHLNQRSUXZabcdfghiklmnopqrstuvx",
        "ITw",
        LS_LONG,
    ),
    opt(
        "w",
        "Vfhiosu",
        "",
        "--from --help --ip-addr --no-current --no-header --old-style --short --version",
    ),
    opt(
        "wc",
        "Lclmw",
        "",
        "\
        --bytes --chars --files0-from= --help --lines --max-line-length --version \
        --words",
    ),
    opt(
        "whatis",
        "?Vdlrvw",
        "CLMms",
        "\
        --config-file= --debug --help --locale= --long --manpath= --regex --section= \
        --sections= --systems= --usage --verbose --version --wildcard",
    ),
    opt("whereis", "Vbfhlmsu", "BMS", "--help --version"),
    opt("which", "as", "", ""),
    opt(
        "who",
        "HTabdlmpqrstuw",
        "",
        "\
        --all --boot --count --dead --heading --help --ips --login --lookup --mesg \
        --message --process --runlevel --short --time --users --version --writable",
    ),
    opt("whoami", "", "", "--help --version"),
    opt(
        "xxd",
        "abCEehipruduv",
        "cglnos",
        "\
        -autoskip -bits -capitalize -EBCDIC -help -include -postscript -plain -ps \
        -revert -uppercase -version",
    ),
    opt(
        "xz",
        "HVcdefhklqtvz",
        "0T",
        "\
        --compress --decompress --extreme --force --help --keep --list --long-help \
        --quiet --stdout --test --threads= --verbose --version",
    ),
    opt(
        "xzcat",
        "HVcdefhklqtvz",
        "0T",
        "\
        --compress --decompress --extreme --force --help --keep --list --long-help \
        --quiet --stdout --test --threads= --verbose --version",
    ),
    opt("yes", "", "", "--help --version"),
    opt(
        "zcat",
        "flqrtv",
        "S",
        "\
        --force --help --list --quiet --recursive --suffix= --synchronous --test \
        --verbose --version",
    ),
    opt(
        "zdiff",
        "BENTZabcdeilnpqrstuvwy",
        "CDFISUWXx",
        DIFF_LONG,
    ),
    opt(
        "zgrep",
        "EFGHILPRTUVZabchilnoqrsvwxz",
        "ABCDNdefm",
        GREP_LONG,
    ),
    opt("zless", "", "", "--help --version"),
    opt("zmore", "", "", "--help --version"),
    opt(
        "zstd",
        "BHMSTVbcdefhiklqrv",
        "Do",
        ZSTD_LONG,
    ),
    opt(
        "zstdcat",
        "BHMSTVbcdefhiklqrv",
        "Do",
        ZSTD_LONG,
    ),
];

/// Commands that delete, move or replace data. An option missing here makes
/// the call high.
pub(super) const MOVING: &[Options] = &[
    opt(
        "tar",
        "AcdrtuxjJzZavkmopPShiWwOUBGMlns",
        "fCITXbHgKLNVF",
        "--create --extract --get --list --append --update --diff --compare --file \
         --directory --gzip --gunzip --ungzip --bzip2 --xz --zstd --lzma --lzip --auto-compress \
         --verbose --keep-old-files --skip-old-files --keep-newer-files --no-same-owner \
         --same-owner --preserve-permissions --same-permissions --no-same-permissions \
         --absolute-names --exclude --exclude-from --files-from --transform --xform \
         --strip-components --wildcards --no-wildcards --owner --group --mode \
         --numeric-owner --sort --mtime --format --to-stdout --one-file-system \
         --dereference --totals --checkpoint --null --show-transformed-names \
         --exclude-vcs --exclude-vcs-ignores --anchored --ignore-case --recursion \
         --no-recursion --use-compress-program --to-command --checkpoint-action \
         --info-script --new-volume-script --rsh-command --warning --version --help \
         --label --blocking-factor --touch --no-overwrite-dir --occurrence --verify",
    ),
    opt(
        "cp",
        "abdfHilLnPpRrsuvxZ",
        "StT",
        "--archive --attributes-only --backup --copy-contents --debug --dereference --force \
         --interactive --link --no-clobber --no-dereference --preserve --no-preserve \
         --parents --recursive --reflink --sparse --strip-trailing-slashes --symbolic-link \
         --suffix --target-directory --no-target-directory --update --verbose \
         --one-file-system --context --help --version --remove-destination",
    ),
    opt(
        "mv",
        "bfinuvZ",
        "StT",
        "--backup --debug --force --interactive --no-clobber --strip-trailing-slashes \
         --suffix --target-directory --no-target-directory --update --verbose --context \
         --help --version",
    ),
    opt(
        "ln",
        "bdFfiLnPrsv",
        "StT",
        "--backup --directory --force --interactive --logical --no-dereference --physical \
         --relative --symbolic --suffix --target-directory --no-target-directory --verbose \
         --help --version",
    ),
    opt(
        "rsync",
        "0468aAbcCDEgHhIiJKkLlmnNOoPpqRrsStUuvWXxyz",
        "BefMT",
        "--verbose --info= --debug= --quiet --no-motd --checksum --archive --recursive \
         --relative --no-implied-dirs --backup --backup-dir= --suffix= --update --inplace \
         --append --append-verify --dirs --mkpath --links --copy-links --copy-unsafe-links \
         --safe-links --munge-links --copy-dirlinks --keep-dirlinks --hard-links --perms \
         --executability --chmod= --acls --xattrs --owner --group --devices --specials \
         --times --atimes --open-noatime --crtimes --omit-dir-times --omit-link-times \
         --super --fake-super --sparse --preallocate --dry-run --whole-file --no-whole-file \
         --checksum-choice= --one-file-system --block-size= --rsh= --rsync-path= --existing \
         --ignore-existing --remove-source-files --delete --delete-before --delete-during \
         --delete-delay --delete-after --delete-excluded --ignore-missing-args \
         --delete-missing-args --ignore-errors --force --max-delete= --max-size= --min-size= \
         --max-alloc= --partial --partial-dir= --delay-updates --prune-empty-dirs \
         --numeric-ids --usermap= --groupmap= --chown= --timeout= --contimeout= \
         --ignore-times --size-only --modify-window= --temp-dir= --fuzzy --compare-dest= \
         --copy-dest= --link-dest= --compress --compress-choice= --compress-level= \
         --skip-compress= --cvs-exclude --filter= --exclude= --exclude-from= --include= \
         --include-from= --files-from= --from0 --old-args --secluded-args --protect-args \
         --trust-sender --copy-as= --address= --port= --sockopts= --blocking-io --stats \
         --8-bit-output --human-readable --progress --itemize-changes --remote-option= \
         --out-format= --log-file= --log-file-format= --password-file= --early-input= \
         --list-only --bwlimit= --stop-after= --stop-at= --fsync --write-batch= \
         --only-write-batch= --read-batch= --protocol= --iconv= --ipv4 --ipv6 --version \
         --help --no-perms --no-owner --no-group --no-times --no-recursive --no-relative \
         --no-compress --no-inc-recursive",
    ),
    opt(
        "zip",
        "0123456789!@$ADFJLRSTUXVcdefghjklmoqruvwyz",
        "bisnptxOPZ",
        "--recurse-paths --recurse-patterns --move --delete --quiet --verbose --junk-paths \
         --symlinks --exclude --include --update --freshen --test --encrypt --grow \
         --output-file --split-size --temp-path --suffixes --filesync --copy-entries \
         --unzip-command --fix --fixfix --adjust-sfx --archive-clear --archive-set --latin1 \
         --no-dir-entries --no-extra --to-crlf --from-crlf --logfile-path --log-append \
         --help --version --license --names-stdin --compression-method --password \
         --display-bytes --display-counts --display-dots --display-globaldots \
         --display-usize --display-volume --no-wild --wild-stop-dirs --must-match \
         --entry-comments --archive-comment --quiet --dot-size --sf --show-files",
    ),
    opt("unzip", "pfuvlTtzZnoajUCLXVKMqDhcs12", "dxOIP", ""),
];

/// `git`'s own options, before the subcommand.
pub(super) const GIT_GLOBAL: Options = opt(
    "git",
    "hvpP",
    "Cc",
    "--version --help --exec-path --exec-path= --html-path --man-path --info-path \
     --paginate --no-pager --no-replace-objects --no-lazy-fetch --no-optional-locks \
     --no-advice --bare --git-dir= --work-tree= --namespace= --config-env= --super-prefix= \
     --literal-pathspecs --glob-pathspecs --noglob-pathspecs --icase-pathspecs \
     --list-cmds= --attr-source=",
);

/// git subcommands that only read. An unknown option of any other
/// subcommand makes the call high: they change the repository or the files.
pub(super) const GIT_READS: &str = "\
    status log diff show rev-parse rev-list ls-files ls-tree cat-file blame annotate \
    shortlog describe whatchanged help version count-objects fsck show-ref for-each-ref \
    name-rev merge-base check-ignore check-attr var show-branch cherry diff-tree \
    diff-files diff-index verify-commit verify-tag grep remote
";

/// The options of each git subcommand the classifier tells apart. `--no-x`
/// is known wherever `--x` is.
pub(super) const GIT: &[Options] = &[
    opt(
        "add",
        "ANefinpuv",
        "",
        "\
        --all --chmod --dry-run --edit --force --ignore-errors --ignore-missing \
        --ignore-removal --intent-to-add --interactive --patch --pathspec-file-nul \
        --pathspec-from-file= --refresh --renormalize --sparse --update --verbose",
    ),
    opt(
        "am",
        "3Scikmnqrsu",
        "Cp",
        "\
        --3way --abort --allow-empty --committer-date-is-author-date --continue \
        --directory= --empty --exclude= --gpg-sign --ignore-date --ignore-space-change \
        --ignore-whitespace --include= --interactive --keep --keep-cr --keep-non-patch \
        --message-id --patch-format= --quiet --quit --quoted-cr= --reject \
        --rerere-autoupdate --resolved --resolvemsg --retry --scissors \
        --show-current-patch --signoff --skip --utf8 --verify --whitespace=",
    ),
    opt(
        "apply",
        "3NRqvz",
        "Cp",
        "\
        --3way --add --allow-empty --allow-overlap --apply --build-fake-ancestor= \
        --cached --check --directory= --exclude= --ignore-space-change \
        --ignore-whitespace --inaccurate-eof --include= --index --intent-to-add \
        --numstat --ours --quiet --recount --reject --reverse --stat --summary --theirs \
        --unidiff-zero --union --unsafe-paths --verbose --whitespace=",
    ),
    opt(
        "archive",
        "Nlv",
        "o",
        "\
        --add-file= --add-virtual-file= --exec= --format= --list --mtime= --output= \
        --prefix= --remote= --verbose --worktree-attributes",
    ),
    opt(
        "blame",
        "CMbceflnpstw",
        "LS",
        "\
        --abbrev --color-by-age --color-lines --contents= --ignore-rev= \
        --ignore-revs-file= --incremental --line-porcelain --minimal --porcelain \
        --progress --root --score-debug --show-email --show-name --show-number \
        --show-stats",
    ),
    opt(
        "branch",
        "CDMacdfilmqrtv",
        "u",
        "\
        --abbrev --all --color --column --contains= --copy --create-reflog --delete \
        --edit-description --force --format= --ignore-case --list --merged= --move \
        --omit-empty --points-at= --quiet --recurse-submodules --remotes \
        --set-upstream-to= --show-current --sort= --track --unset-upstream --verbose",
    ),
    opt(
        "cat-file",
        "Zepst",
        "",
        "\
        --allow-unknown-type --batch --batch-all-objects --batch-check --batch-command \
        --buffer --filters --follow-symlinks --mailmap --path= --textconv --unordered \
        --use-mailmap",
    ),
    opt("check-attr", "az", "", "--all --cached --source= --stdin"),
    opt(
        "check-ignore",
        "nqvz",
        "",
        "--index --non-matching --quiet --stdin --verbose",
    ),
    opt(
        "checkout",
        "23dflmpqt",
        "Bb",
        "\
        --conflict= --detach --force --guess --ignore-other-worktrees \
        --ignore-skip-worktree-bits --merge --orphan= --ours --overlay \
        --overwrite-ignore --patch --pathspec-file-nul --pathspec-from-file= --progress \
        --quiet --recurse-submodules --theirs --track",
    ),
    opt("cherry", "v", "", "--abbrev --verbose"),
    opt(
        "cherry-pick",
        "Sensx",
        "Xm",
        "\
        --abort --allow-empty --allow-empty-message --cleanup= --commit --continue \
        --edit --empty --ff --gpg-sign --keep-redundant-commits --mainline= --quit \
        --rerere-autoupdate --signoff --skip --strategy-option= --strategy=",
    ),
    opt(
        "clean",
        "Xdfinqx",
        "e",
        "--dry-run --exclude= --force --interactive --quiet",
    ),
    opt(
        "commit",
        "Saeinopqsuvz",
        "CFcmt",
        "\
        --ahead-behind --all --amend --author= --branch --cleanup= --date= --dry-run \
        --edit --file= --fixup --gpg-sign --include --interactive --long --message= \
        --null --only --patch --pathspec-file-nul --pathspec-from-file= --porcelain \
        --post-rewrite --quiet --reedit-message= --reset-author --reuse-message= --short \
        --signoff --squash= --status --template= --trailer= --untracked-files --verbose \
        --verify",
    ),
    opt("commit-tree", "S", "Fmp", "--gpg-sign"),
    opt(
        "config",
        "zle",
        "ft",
        "\
        --add --all --append --blob= --bool --bool-or-int --bool-or-str --comment= \
        --default= --edit --expiry-date --file= --fixed-value --get --get-all \
        --get-color --get-colorbool --get-regexp --get-urlmatch --global --includes \
        --int --list --local --name-only --null --path --regexp --remove-section \
        --rename-section --replace-all --show-names --show-origin --show-scope --system \
        --type= --unset --unset-all --url= --value= --worktree",
    ),
    opt("count-objects", "Hv", "", "--human-readable --verbose"),
    opt(
        "describe",
        "",
        "",
        "\
        --abbrev --all --always --broken --candidates= --contains --debug --dirty \
        --exact-match --exclude= --first-parent --long --match= --tags",
    ),
    opt(
        "diff",
        "cgimpsuzwbWRabEFPNtrqhlk01",
        "GSOLn",
        git_log_and_diff_options!(),
    ),
    opt(
        "diff-files",
        "cgimpsuzwbWRabEFPNtrqhlk01",
        "GSOLn",
        git_log_and_diff_options!(),
    ),
    opt(
        "diff-index",
        "cgimpsuzwbWRabEFPNtrqhlk01",
        "GSOLn",
        git_log_and_diff_options!(),
    ),
    opt(
        "diff-tree",
        "cgimpsuzwbWRabEFPNtrqhlk01",
        "GSOLn",
        git_log_and_diff_options!(),
    ),
    opt(
        "for-each-ref",
        "ps",
        "",
        "\
        --color --contains= --count= --exclude= --format= --ignore-case \
        --include-root-refs --merged= --omit-empty --perl --points-at= --python --shell \
        --sort= --stdin --tcl",
    ),
    opt(
        "format-patch",
        "cgimpsuzwbWRabEFPNtrqhlk01Nkpqs",
        "GSOLnov",
        concat!(
            git_log_and_diff_options!(),
            " ",
            "\
            --add-header= --attach --base= --cc= --cover-from-description= \
            --cover-letter --creation-factor= --description-file= \
            --filename-max-length= --force-in-body-from --from \
            --ignore-if-in-upstream --in-reply-to= --inline --interdiff= \
            --keep-subject --numbered --numbered-files --progress \
            --range-diff= --reroll-count= --rfc --signature-file= \
            --signature= --signoff --start-number= --stdout \
            --subject-prefix= --suffix= --thread --to= --zero-commit"
        ),
    ),
    opt(
        "fsck",
        "v",
        "",
        "\
        --cache --connectivity-only --dangling --full --lost-found --name-objects \
        --progress --reflogs --root --strict --tags --unreachable --verbose",
    ),
    opt(
        "gc",
        "q",
        "",
        "\
        --aggressive --auto --cruft --detach --force --keep-largest-pack \
        --max-cruft-size= --prune --quiet",
    ),
    opt(
        "grep",
        "EFGHILNOPWachilnopqrvwz",
        "ABCefm",
        "\
        --after-context= --all-match --and --basic-regexp --before-context= --break \
        --cached --color --column --context= --count --exclude-standard --ext-grep \
        --extended-regexp --files-with-matches --files-without-match --fixed-strings \
        --full-name --function-context --heading --ignore-case --index --invert-match \
        --line-number --max-count= --max-depth= --name-only --not --null --only-matching \
        --open-files-in-pager --or --perl-regexp --quiet --recurse-submodules \
        --recursive --show-function --text --textconv --threads= --untracked \
        --word-regexp",
    ),
    opt(
        "help",
        "acgimvw",
        "",
        "\
        --aliases --all --config --developer-interfaces --external-commands --guides \
        --info --man --user-interfaces --verbose --web",
    ),
    opt(
        "init",
        "q",
        "b",
        "\
        --bare --initial-branch= --object-format= --quiet --ref-format= \
        --separate-git-dir= --shared --template=",
    ),
    opt(
        "log",
        "cgimpsuzwbWRabEFPNtrqhlk01",
        "GSOLn",
        git_log_and_diff_options!(),
    ),
    opt(
        "ls-files",
        "cdfikmostuvz",
        "Xx",
        "\
        --abbrev --cached --debug --deduplicate --deleted --directory --empty-directory \
        --eol --error-unmatch --exclude-from= --exclude-per-directory= \
        --exclude-standard --exclude= --format= --full-name --ignored --killed \
        --modified --others --recurse-submodules --resolve-undo --sparse --stage \
        --unmerged --with-tree=",
    ),
    opt(
        "ls-tree",
        "dlrtz",
        "",
        "\
        --abbrev --format= --full-name --full-tree --long --name-only --name-status \
        --object-only",
    ),
    opt(
        "maintenance",
        "f",
        "",
        "--auto --config-file= --detach --force --quiet --schedule= --scheduler= --task=",
    ),
    opt(
        "merge",
        "Senqv",
        "FXms",
        "\
        --abort --allow-unrelated-histories --autostash --cleanup= --commit --continue \
        --edit --ff --ff-only --file= --gpg-sign --into-name= --log --message= \
        --overwrite-ignore --progress --quiet --quit --rerere-autoupdate --signoff \
        --squash --stat --strategy-option= --strategy= --summary --verbose --verify \
        --verify-signatures",
    ),
    opt(
        "merge-base",
        "a",
        "",
        "--all --fork-point --independent --is-ancestor --octopus",
    ),
    opt("mv", "fknv", "", "--dry-run --force --sparse --verbose"),
    opt(
        "name-rev",
        "",
        "",
        "\
        --all --always --annotate-stdin --exclude= --name-only --refs= --tags \
        --undefined",
    ),
    opt(
        "notes",
        "fnqv",
        "CFcms",
        "\
        --abort --allow-empty --commit --dry-run --file= --for-rewrite= --force \
        --ignore-missing --message= --quiet --reedit-message= --reuse-message= \
        --separator --stdin --strategy= --stripspace --verbose",
    ),
    opt(
        "pack-refs",
        "",
        "",
        "--all --auto --exclude= --include= --prune",
    ),
    opt(
        "prune",
        "nv",
        "",
        "--dry-run --exclude-promisor-objects --expire= --progress --verbose",
    ),
    opt(
        "read-tree",
        "imnquv",
        "",
        "\
        --aggressive --debug-unpack --dry-run --empty --exclude-per-directory= \
        --index-output= --prefix= --quiet --recurse-submodules --reset --sparse-checkout \
        --trivial --verbose",
    ),
    opt(
        "rebase",
        "Sfimnqrv",
        "CXsx",
        "\
        --abort --apply --autosquash --autostash --committer-date-is-author-date \
        --continue --edit-todo --empty --exec= --ff --force-rebase --fork-point \
        --gpg-sign --ignore-whitespace --interactive --keep-base --merge --onto= --quiet \
        --quit --reapply-cherry-picks --rebase-merges --rerere-autoupdate \
        --reschedule-failed-exec --reset-author-date --root --show-current-patch \
        --signoff --skip --stat --strategy-option= --strategy= --update-refs --verbose \
        --verify --whitespace=",
    ),
    opt(
        "reflog",
        "n",
        "",
        "\
        --all --dry-run --expire-unreachable= --expire= --rewrite --single-worktree \
        --stale-fix --updateref --verbose",
    ),
    opt(
        "remote",
        "adfnpv",
        "mt",
        "\
        --add --all --auto --delete --dry-run --fetch --master= --mirror --progress \
        --prune --push --tags --track= --verbose",
    ),
    opt(
        "repack",
        "AFabdfiklmnq",
        "g",
        "\
        --cruft --cruft-expiration= --delta-islands --depth= --expire-to= --filter-to= \
        --filter= --geometric= --keep-pack= --keep-unreachable --local --max-cruft-size= \
        --max-pack-size= --pack-kept-objects --quiet --threads= --unpack-unreachable= \
        --window-memory= --window= --write-bitmap-index --write-midx",
    ),
    opt(
        "reset",
        "Npq",
        "",
        "\
        --hard --intent-to-add --keep --merge --mixed --patch --pathspec-file-nul \
        --pathspec-from-file= --quiet --recurse-submodules --refresh --soft",
    ),
    opt(
        "restore",
        "23SWmpq",
        "s",
        "\
        --conflict= --ignore-skip-worktree-bits --ignore-unmerged --merge --ours \
        --overlay --patch --pathspec-file-nul --pathspec-from-file= --progress --quiet \
        --recurse-submodules --source= --staged --theirs --worktree",
    ),
    opt(
        "rev-list",
        "cgimpsuzwbWRabEFPNtrqhlk01",
        "GSOLn",
        git_log_and_diff_options!(),
    ),
    opt(
        "rev-parse",
        "q",
        "",
        "\
        --abbrev-ref --abbrev-ref= --all --branches --tags --remotes --git-dir \
        --git-common-dir --absolute-git-dir --show-toplevel --show-cdup --show-prefix \
        --show-superproject-working-tree --is-inside-work-tree --is-inside-git-dir \
        --is-bare-repository --is-shallow-repository --short --short= --verify --quiet \
        --symbolic --symbolic-full-name --default= --revs-only --no-revs --flags --sq \
        --sq-quote --not --local-env-vars --git-path= --resolve-git-dir= \
        --show-object-format --show-object-format= --since= --until= --after= --before= \
        --path-format= --shared-index-path --parseopt --keep-dashdash \
        --stop-at-non-option --stuck-long --disambiguate= --glob= --exclude= \
        --show-ref-format",
    ),
    opt(
        "revert",
        "Sens",
        "Xm",
        "\
        --abort --cleanup= --commit --continue --edit --gpg-sign --mainline= --quit \
        --reference --rerere-autoupdate --signoff --skip --strategy-option= --strategy=",
    ),
    opt(
        "rm",
        "fnqr",
        "",
        "\
        --cached --dry-run --force --ignore-unmatch --pathspec-file-nul \
        --pathspec-from-file= --quiet --sparse",
    ),
    opt(
        "shortlog",
        "censw",
        "",
        "--committer --email --group= --numbered --summary",
    ),
    opt(
        "show",
        "cgimpsuzwbWRabEFPNtrqhlk01",
        "GSOLn",
        git_log_and_diff_options!(),
    ),
    opt(
        "show-branch",
        "agr",
        "",
        "\
        --all --color --current --date-order --independent --list --merge-base --more \
        --name --reflog --remotes --sha1-name --sparse --topics --topo-order",
    ),
    opt(
        "show-ref",
        "dqs",
        "",
        "\
        --abbrev --branches --dereference --exclude-existing --exists --hash --head \
        --quiet --tags --verify",
    ),
    opt(
        "sparse-checkout",
        "z",
        "",
        "--cone --rules-file= --skip-checks --sparse-index --stdin",
    ),
    opt(
        "stash",
        "Sakpqu",
        "m",
        "\
        --all --include-untracked --index --keep-index --message= --only-untracked \
        --patch --pathspec-file-nul --pathspec-from-file= --quiet --staged",
    ),
    opt(
        "status",
        "Mbsuvz",
        "",
        "\
        --ahead-behind --branch --column --find-renames --ignore-submodules --ignored \
        --long --null --porcelain --renames --short --show-stash --untracked-files \
        --verbose",
    ),
    opt(
        "switch",
        "dfmqt",
        "Cc",
        "\
        --conflict= --create= --detach --discard-changes --force --force-create= --guess \
        --ignore-other-worktrees --merge --orphan= --overwrite-ignore --progress --quiet \
        --recurse-submodules --track",
    ),
    opt(
        "symbolic-ref",
        "dq",
        "m",
        "--delete --quiet --recurse --short",
    ),
    opt(
        "tag",
        "adefilnsv",
        "Fmu",
        "\
        --annotate --cleanup= --color --column --contains= --create-reflog --delete \
        --edit --file= --force --format= --ignore-case --list --local-user= --merged= \
        --message= --omit-empty --points-at= --sign --sort= --trailer= --verify",
    ),
    opt(
        "update-index",
        "gqz",
        "",
        "\
        --add --again --assume-unchanged --cacheinfo= --chmod --clear-resolve-undo \
        --force-remove --force-untracked-cache --force-write-index --fsmonitor \
        --fsmonitor-valid --ignore-missing --ignore-skip-worktree-entries \
        --ignore-submodules --index-info --index-version= --info-only --really-refresh \
        --refresh --remove --replace --show-index-version --skip-worktree --split-index \
        --stdin --test-untracked-cache --unmerged --unresolve --untracked-cache \
        --verbose",
    ),
    opt("var", "", "", ""),
    opt("verify-commit", "v", "", "--raw --verbose"),
    opt("verify-tag", "v", "", "--format= --raw --verbose"),
    opt("version", "", "", "--build-options"),
    opt(
        "whatchanged",
        "cgimpsuzwbWRabEFPNtrqhlk01",
        "GSOLn",
        git_log_and_diff_options!(),
    ),
    opt(
        "worktree",
        "dfnqvz",
        "Bb",
        "\
        --checkout --detach --dry-run --expire= --force --guess-remote --lock --orphan \
        --porcelain --quiet --reason= --track --verbose",
    ),
    opt("write-tree", "", "", "--missing-ok --prefix="),
];

/// The table for `program` in `tables`.
pub(super) fn options_of<'t>(tables: &'t [Options], program: &str) -> Option<&'t Options> {
    tables.iter().find(|o| o.program == program)
}

/// The first option of `args` (their values after quote removal; `None` for
/// a word only known at run time, which is taken as an operand) that
/// `options` does not list. `negatable` accepts `--no-x` wherever `--x` is
/// known (git's rule).
pub(super) fn unknown_option(
    options: &Options,
    args: &[Option<&str>],
    negatable: bool,
) -> Option<String> {
    let long_known = |name: &str| -> Option<bool> {
        let positive = name
            .strip_prefix("--no-")
            .filter(|_| negatable)
            .map(|n| format!("--{n}"));
        [Some(name.to_string()), positive]
            .into_iter()
            .flatten()
            .find_map(|n| {
                if listed(options.long, &n) {
                    Some(false)
                } else if listed(options.long, &format!("{n}=")) {
                    Some(true)
                } else {
                    None
                }
            })
    };
    let mut words = args.iter();
    while let Some(word) = words.next() {
        let Some(text) = word else { continue };
        if *text == "--" {
            return None;
        }
        if let Some(long) = text.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (format!("--{n}"), Some(v)),
                None => (format!("--{long}"), None),
            };
            match long_known(&name) {
                Some(true) if inline.is_none() => {
                    words.next();
                }
                Some(_) => {}
                None => return Some(name),
            }
            continue;
        }
        let Some(letters) = text.strip_prefix('-').filter(|l| !l.is_empty()) else {
            continue;
        };
        if listed(options.long, text) || is_number(letters) {
            continue;
        }
        for (at, letter) in letters.char_indices() {
            if options.attached.contains(letter) {
                break;
            }
            if options.valued.contains(letter) {
                if at + letter.len_utf8() == letters.len() {
                    words.next();
                }
                break;
            }
            if !options.flags.contains(letter) {
                return Some(format!("-{letter}"));
            }
        }
    }
    None
}

/// `-5`, `-1.5`: a count or a negative number, not an option (`head -5`,
/// `seq -1 5`).
fn is_number(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_digit())
        && text.chars().all(|c| c.is_ascii_digit() || c == '.')
}
