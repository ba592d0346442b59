package normalize

import "strings"

// nicknameGroups lists common US given names with their nicknames and
// short forms. A name may sit in several groups (Chris: Christopher,
// Christina, Christian); two names are nicknames of each other when they
// share a group.
var nicknameGroups = []string{
	"abigail abby abbie gail", "abraham abe bram", "adam ade", "adelaide addie adele della",
	"agnes aggie nessa", "albert al bert bertie", "alexander alex al alec xander sandy lex sasha",
	"alexandra alex alexa sandra sandy lexi sasha", "alfred al alf fred freddie",
	"alice allie ally elsie", "allison allie ally", "amanda mandy manda", "andrea andi drea",
	"andrew andy drew", "angela angie angel", "anne ann annie nan nancy nannie", "anna annie",
	"anthony tony ant", "antonio tony", "archibald archie", "arnold arnie", "arthur art artie",
	"augustus gus augie", "august gus augie", "barbara barb barbie babs bobbie", "beatrice bea trixie",
	"benjamin ben benny benji", "bernard bernie barney", "beverly bev", "bradley brad",
	"brian bri", "bridget biddy bridie", "calvin cal", "cameron cam", "carol carrie caroline",
	"caroline carrie carol lina", "catherine cathy cath kate katie kathy cat cate kit",
	"katherine kathy kate katie kat kit kitty", "kathleen kathy kate katie kath", "cecilia cece cissy",
	"charles charlie chuck chas chaz chip carl", "charlotte charlie lottie lotte",
	"christopher chris kit topher", "christina chris tina chrissy christine", "christine chris chrissy tina",
	"christian chris", "clarence clare", "clifford cliff", "cornelius neil connie", "cynthia cindy cyndi",
	"daniel dan danny", "danielle dani elle", "david dave davey", "deborah debbie deb debra",
	"debra debbie deb", "dennis denny", "diana di diane", "dominic dom nick", "donald don donnie",
	"dorothy dot dottie dolly", "douglas doug", "edward ed eddie ned ted teddy",
	"edwin ed eddie", "edmund ed eddie ned", "eleanor ellie nell nora elle", "elizabeth liz lizzie beth betty betsy eliza libby bess bessie lisa liza elisa ellie",
	"ellen ellie nell", "emily em emmy millie", "emma em emmy", "eugene gene", "evelyn eve evie",
	"francis frank frankie fran", "frances fran frannie frankie", "franklin frank",
	"frederick fred freddie fritz rick", "gabriel gabe", "gabrielle gabby gabi",
	"geoffrey geoff jeff", "jeffrey jeff geoff", "george georgie", "gerald gerry jerry",
	"gertrude gertie trudy", "gilbert gil bert", "gregory greg", "harold hal harry",
	"harriet hattie", "henry hank harry hal", "herbert herb bert", "howard howie",
	"isabella bella izzy isabel belle", "isabel izzy bella belle", "jacob jake jack",
	"james jim jimmy jamie jimbo", "janet jan", "jane janie jenny", "jennifer jen jenny jenn jennie",
	"jessica jess jessie", "joanne jo joann", "jonathan jon jonny nathan", "john jack johnny jon",
	"joseph joe joey jos", "josephine jo josie", "joshua josh", "judith judy jude", "julia julie jules",
	"justin justy", "kenneth ken kenny", "kimberly kim kimmy", "lawrence larry laurie",
	"laurence larry", "leonard len lenny leo", "leslie les", "lillian lily lil", "louis lou louie",
	"louise lou lulu", "lucille lucy lu", "madeline maddie maddy madeleine", "margaret maggie meg peggy marge margie greta daisy megan peg",
	"marjorie marge margie", "martha marty mattie patty", "martin marty", "mary molly polly mae mamie mari",
	"matthew matt matty", "maureen mo", "maxwell max", "maximilian max", "melissa mel missy lisa",
	"melvin mel", "michael mike mikey mick mickey", "michelle shelly mickey", "mildred millie",
	"mitchell mitch", "nathan nate nat", "nathaniel nate nat nathan", "nicholas nick nicky",
	"nicole nicky nikki", "norman norm", "oliver ollie", "olivia liv livvy ollie",
	"pamela pam", "patricia pat patty trish tricia patsy", "patrick pat paddy rick",
	"peter pete", "philip phil", "phillip phil", "priscilla cilla", "rachel rae",
	"raymond ray", "rebecca becky becca", "richard rick ricky dick rich richie", "robert rob bob bobby bert robbie",
	"roberta bobbie robbie", "rodney rod", "ronald ron ronnie", "rosemary rose rosie",
	"rosalind roz", "russell russ rusty", "samantha sam sammy", "samuel sam sammy",
	"sandra sandy", "sarah sally sadie sara", "stanley stan", "stephanie steph stevie",
	"stephen steve stevie", "steven steve stevie", "stuart stu", "susan sue susie suzy",
	"suzanne sue susie suzy", "sylvester sly", "terence terry", "teresa terry tess tessa tracy",
	"theresa terry tess tessa", "theodore ted teddy theo", "thomas tom tommy thom",
	"timothy tim timmy", "tobias toby", "valerie val", "veronica ronnie roni",
	"victoria vicky tori vic", "victor vic", "vincent vince vinny", "virginia ginny ginger",
	"walter walt wally", "wilfred will fred", "william will bill billy willie liam willy",
	"winifred winnie freda", "zachary zach zack", "alan al", "allen al", "ambrose brose",
	"angelina angie", "antoinette toni netty", "bartholomew bart", "bertha bertie",
	"candace candy", "carl carlos", "clara clare", "clement clem", "curtis curt",
	"cyrus cy", "delbert del", "dolores lola dee", "donna donnie", "ebenezer eben",
	"edith edie", "elaine lainie", "elias eli", "elijah eli", "ernest ernie", "esther essie",
	"ezekiel zeke", "florence flo flossie", "gwendolyn gwen wendy", "helen nell ellie lena",
	"ignatius iggy", "jacqueline jackie jacky", "jeremiah jerry", "jeremy jerry",
	"jerome jerry", "kristen kris kristy", "kristopher kris", "lorraine lori", "lucas luke",
	"luke lucas", "magdalena maggie lena", "malcolm mal", "marilyn mary lyn", "mathilda tilly",
	"matilda tilly", "mortimer mort", "napoleon leon", "nancy nan", "penelope penny",
	"percival percy", "prudence prue", "randolph randy", "randall randy", "reginald reggie reg",
	"roger rog", "roland rollie", "sebastian seb", "sidney sid", "silas si", "solomon sol",
	"sophia sophie", "tabitha tabby", "vernon vern", "wallace wally", "wendell wendy",
	"wilhelmina mina willa", "yolanda yoli", "zachariah zach zack", "alfonso al alonzo",
	"alejandro alex", "francisco frank paco pancho", "jose pepe", "guillermo memo",
	"roberto beto", "alberto beto al", "eduardo eddie lalo", "enrique kike quique",
	"manuel manny", "ignacio nacho", "jesus chuy", "refugio cuco", "mercedes meche",
	"guadalupe lupe lupita", "dolores lola", "concepcion concha", "rosario chayo",
	"margarita rita", "elizabeth elisabeth", "catherine katherine kathryn catharine",
	"steven stephen", "philip phillip", "jon john", "ann anne", "sara sarah",
	"dwight ike", "harrison harry", "joan joanie", "kay katie", "anastasia stacy ana",
	"eustace stacy", "rhoda rodie", "loretta retta", "ronald ronny", "ashley ash",
	"tyler ty", "everett ev", "leroy lee roy", "leon leo", "leopold leo", "ida idy",
	"kendall ken", "kendrick ken", "sherman sherm", "shirley shirl", "solomon solly",
	"timothy timmie", "tyrone ty", "vivian viv", "wesley wes", "whitney whit", "wyatt wy",
}

// nicknames maps each name to the groups it belongs to.
var nicknames = func() map[string][]uint16 {
	m := make(map[string][]uint16, 1024)
	for gi, g := range nicknameGroups {
		for _, n := range strings.Fields(g) {
			l := m[n]
			if len(l) == 0 || l[len(l)-1] != uint16(gi) {
				m[n] = append(l, uint16(gi))
			}
		}
	}
	return m
}()

// Nicknames reports whether two normalised given names are the same name in
// full and short form (william and bill) or two nicknames of one name (bill
// and will). Equal names are not nicknames.
func Nicknames(a, b string) bool {
	if a == b {
		return false
	}
	ga, gb := nicknames[a], nicknames[b]
	for _, x := range ga {
		for _, y := range gb {
			if x == y {
				return true
			}
		}
	}
	return false
}

// NicknameGroups is the number of nickname groups built in (for tests and
// documentation).
func NicknameGroups() int { return len(nicknameGroups) }

// CanonicalGiven is the full name that heads g's largest nickname group
// (bill → william, will → william), or "" when g is in none. Blocking uses
// it so that a nickname and its full name usually share a key.
func CanonicalGiven(g string) string {
	return canonical[g]
}

var canonical = func() map[string]string {
	m := make(map[string]string, len(nicknames))
	for n, gs := range nicknames {
		best, size := "", 0
		for _, gi := range gs {
			f := strings.Fields(nicknameGroups[gi])
			if f[0] == n { // a full name stands for itself
				best, size = n, 1<<30
			} else if len(f) > size {
				best, size = f[0], len(f)
			}
		}
		m[n] = best
	}
	return m
}()

// KnownGiven reports whether g (normalised) is a given name of the built-in
// nickname table, full or short.
func KnownGiven(g string) bool {
	_, ok := nicknames[g]
	return ok
}
