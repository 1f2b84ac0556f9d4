<?php
// Differential oracle: renders a JSON array of {template, vars} cases read on stdin with the real
// Twig (Debian's php-twig) configured like Cerb (autoescape off, strict_variables off, sandboxed
// with Cerb's allow-lists) plus Cerb's own filters and functions, and prints a JSON array of
// {"ok": output} or {"error": message}.

require '/usr/share/php/Twig/autoload.php';

use Twig\Environment;
use Twig\Loader\ArrayLoader;
use Twig\TwigFilter;
use Twig\TwigFunction;
use Twig\TwigTest;

error_reporting(E_ALL & ~E_WARNING & ~E_NOTICE & ~E_DEPRECATED & ~E_USER_DEPRECATED);

$twig = new Environment(new ArrayLoader([]), [
    'cache' => false,
    'debug' => false,
    'strict_variables' => false,
    'auto_reload' => true,
    'trim_blocks' => true,
    'autoescape' => false,
]);

// Cerb's filters (features/cerberusweb.core/api/..., _DevblocksTwigExtensions): non-strings give ''.
$str = fn($v) => is_string($v) ? $v : null;
$twig->addFilter(new TwigFilter('base64_encode', fn($s) => is_string($s) ? base64_encode($s) : ''));
$twig->addFilter(new TwigFilter('base64_decode', fn($s) => is_string($s) ? base64_decode($s) : ''));
$twig->addFilter(new TwigFilter('md5', fn($s) => is_string($s) ? md5($s) : ''));
$twig->addFilter(new TwigFilter('sha1', fn($s) => is_string($s) ? sha1($s) : ''));
$twig->addFilter(new TwigFilter('hash_hmac', function ($s, $key = '', $algo = 'sha256') {
    if (!is_string($s) || !is_string($key) || !is_string($algo) || empty($s)) return '';
    return hash_hmac($algo, $s, $key) ?: '';
}));
$twig->addFilter(new TwigFilter('json_pretty', function ($s) {
    if (!is_string($s)) return '';
    return json_encode(json_decode($s, true), JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES);
}));
$twig->addFilter(new TwigFilter('url_decode', fn($s) => is_string($s) ? rawurldecode($s) : ''));
$twig->addFilter(new TwigFilter('regexp', function ($s, $pattern, $group = 0) {
    if (!is_string($s)) return '';
    $m = [];
    @preg_match($pattern, $s, $m);
    return (is_array($m) && isset($m[$group])) ? $m[$group] : '';
}));
$twig->addFilter(new TwigFilter('truncate', function ($value, $length = 30, $preserve = false, $separator = '...') {
    if (!is_string($value)) return '';
    if (mb_strlen($value, 'UTF-8') > $length) {
        if ($preserve && false !== ($bp = mb_strpos($value, ' ', $length, 'UTF-8'))) $length = $bp;
        return mb_substr($value, 0, $length, 'UTF-8') . $separator;
    }
    return $value;
}));
$twig->addFunction(new TwigFunction('json_decode', fn($s) => json_decode($s, true)));
// Cerb's DevblocksPlatform::arrayDictSet: an empty value that is not an array starts as a
// stdClass object (README: known differences).
$twig->addFunction(new TwigFunction('dict_set', function ($var, $path, $val) {
    if (empty($var)) $var = is_array($var) ? [] : new stdClass();
    $ptr =& $var;
    foreach (explode('.', $path) as $part) {
        $part = str_replace('{DOT}', '.', $part);
        if ('[]' == $part) {
            if (is_array($ptr)) $ptr =& $ptr[];
        } elseif (is_array($ptr)) {
            if (!isset($ptr[$part])) $ptr[$part] = [];
            $ptr =& $ptr[$part];
        } elseif (is_object($ptr)) {
            if (!isset($ptr->$part)) $ptr->$part = [];
            $ptr =& $ptr->$part;
        }
    }
    $ptr = $val;
    return $var;
}));
// Cerb: intClamp($length, 1, 255) (min(max(intval($n), 1), 255)), then
// CerberusApplication::generatePassword: characters drawn from this 33-character alphabet.
$twig->addFunction(new TwigFunction('random_string', function ($length = 8) {
    $length = min(max(intval($length), 1), 255);
    $chars = 'ABCDEFGHJKLMNPQRSTUVWXYZ123456789';
    $out = '';
    for ($i = 0; $i < $length; $i++) $out .= $chars[random_int(0, strlen($chars) - 1)];
    return $out;
}));
// Cerb's array helpers, as in _DevblocksTwigExtensions.
$twig->addFunction(new TwigFunction('array_column', function ($array, $column_key, $index_key = null) {
    if (!is_array($array) || !is_string($column_key)) return;
    return array_column($array, $column_key, $index_key);
}));
$twig->addFunction(new TwigFunction('array_combine', function ($keys, $values) {
    if (!is_array($keys) || !is_array($values)) return;
    return array_combine($keys, $values);
}));
$twig->addFunction(new TwigFunction('array_diff', function ($arr1, $arr2) {
    if (!is_array($arr1) && is_null($arr1)) $arr1 = [];
    if (!is_array($arr2) && is_null($arr2)) $arr2 = [];
    if (!is_array($arr1) || !is_array($arr2)) return;
    return array_diff($arr1, $arr2);
}));
$twig->addFunction(new TwigFunction('array_intersect', function ($arr1, $arr2) {
    if (!is_array($arr1) && is_null($arr1)) $arr1 = [];
    if (!is_array($arr2) && is_null($arr2)) $arr2 = [];
    if (!is_array($arr1) || !is_array($arr2)) return;
    return array_intersect($arr1, $arr2);
}));
$twig->addFunction(new TwigFunction('array_sort_keys', function ($arr) {
    if (!is_array($arr)) return;
    ksort($arr);
    return $arr;
}));
$twig->addFunction(new TwigFunction('array_unique', fn($arr) => is_array($arr) ? array_unique($arr) : null));
$twig->addFunction(new TwigFunction('array_values', fn($arr) => is_array($arr) ? array_values($arr) : null));
$twig->addFunction(new TwigFunction('shuffle', function ($array) {
    if (!is_array($array)) return false;
    shuffle($array);
    return $array;
}));
$twig->addFunction(new TwigFunction('validate_number', fn($n) => is_numeric($n)));
$twig->addFunction(new TwigFunction('regexp_match_all', function ($pattern, $text, $group = 0) {
    $group = intval($group);
    $matches = [];
    @preg_match_all($pattern, $text, $matches, PREG_PATTERN_ORDER);
    if (!empty($matches)) {
        if (empty($group)) return $matches;
        if (is_array($matches) && isset($matches[$group])) return $matches[$group];
    }
    return [];
}));
$twig->addFunction(new TwigFunction('jsonpath_set', function ($var, $path, $val) {
    if (empty($var)) $var = [];
    $parts = explode('.', $path);
    $ptr =& $var;
    foreach ($parts as $part) {
        $is_array_set = false;
        if (substr($part, -2) == '[]') {
            $part = rtrim($part, '[]');
            $is_array_set = true;
        }
        if (!isset($ptr[$part])) $ptr[$part] = [];
        if ($is_array_set) {
            $ptr =& $ptr[$part][];
        } else {
            $ptr =& $ptr[$part];
        }
    }
    $ptr = $val;
    return $var;
}));
$twig->addTest(new TwigTest('numeric', fn($v) => is_numeric($v)));

$tags = ['apply', 'do', 'filter', 'for', 'if', 'sandbox', 'set', 'verbatim', 'with'];
$filters = ['base64_encode', 'base64_decode', 'hash_hmac', 'json_pretty', 'md5', 'regexp', 'sha1',
    'truncate', 'url_decode', 'abs', 'batch', 'capitalize', 'convert_encoding', 'date', 'date_modify',
    'default', 'e', 'escape', 'first', 'format', 'join', 'json_encode', 'keys', 'last', 'length', 'lower',
    'merge', 'nl2br', 'number_format', 'raw', 'replace', 'reverse', 'round', 'slice', 'sort', 'split',
    'striptags', 'title', 'trim', 'upper', 'url_encode', 'spaceless'];
$functions = ['dict_set', 'json_decode', 'random_string', 'attribute', 'cycle', 'date', 'max', 'min',
    'random', 'range', 'array_column', 'array_combine', 'array_diff', 'array_intersect',
    'array_sort_keys', 'array_unique', 'array_values', 'jsonpath_set', 'regexp_match_all',
    'shuffle', 'validate_number'];
$policy = new \Twig\Sandbox\SecurityPolicy($tags, $filters, [], [], $functions);
$twig->addExtension(new \Twig\Extension\SandboxExtension($policy, true));

// Cerb's import-time lexer (package import `{{{ }}}` templates).
$runtimeLexer = new \Twig\Lexer($twig);
$importLexer = new \Twig\Lexer($twig, [
    'tag_comment' => ['{{#', '#}}'],
    'tag_block' => ['{{%', '%}}'],
    'tag_variable' => ['{{{', '}}}'],
    'interpolation' => ['#{{', '}}'],
]);

$cases = json_decode(stream_get_contents(STDIN), true);
$out = [];
foreach ($cases as $case) {
    $twig->setLexer(($case['dialect'] ?? '') === 'import' ? $importLexer : $runtimeLexer);
    try {
        $template = $twig->createTemplate($case['template']);
        $out[] = ['ok' => $template->render(is_array($case['vars'] ?? null) ? $case['vars'] : [])];
    } catch (\Throwable $e) {
        $out[] = ['error' => get_class($e) . ': ' . $e->getMessage()];
    }
}
echo json_encode($out, JSON_INVALID_UTF8_SUBSTITUTE | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
